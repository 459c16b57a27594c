"""Ingest: raw inputs -> cleaned records -> a dataset version (every input accepted or
quarantined with a ``pipeline.datasets.reasons.Reason``).

Public (what other layers call):

* ``image_job.ingest_images`` and ``text_job.ingest_text``: the jobs (CLI, ``jobs/``, retrain,
  demo);
* ``report.summary_table`` and ``report.bad_fraction``: the end-of-job summary and its gate;
* for inference, which prepares inputs exactly as ingest did: ``images.prepare_image``,
  ``text_records.encode_document``, ``tokens.Tokenizer``, ``discover.is_hidden`` and
  ``rejection.Rejected``.

Internal: the per-record plain Python (``images``, ``image_records``, ``text``,
``text_records``, ``tokens``, ``rows``, ``labels``, ``split``, ``discover``, ``dedup``) and
the Spark wiring (``image_job``/``text_job`` helpers, ``spark_dedup``). Listing and reading
raw files through Spark is the Spark adapter's (``pipeline.spark.listing``,
``pipeline.spark.files``).
"""
