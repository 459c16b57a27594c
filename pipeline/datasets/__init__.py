"""Dataset versions, the contract between stages; Petastorm is imported only here.

Public: ``features`` (per kind of data: the stored field, its shape and its encode/decode in
numpy and TensorFlow; ``SPLITS``), ``manifest`` (the typed ``Manifest`` and opening a
version), ``writer.write_version`` (Spark rows -> a committed version), ``commit`` (the write
modes and the atomic commit), ``reader`` (Petastorm streams for training, exact reads for
evaluation). Internal: ``schema`` (the Petastorm Unischema, built from ``features``).
"""
