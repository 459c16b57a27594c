"""Training with Horovod; Horovod and Optuna are imported only here.

Driver side: ``job.train`` (the public entry point: open the run, launch, register when asked),
``launcher`` (the ``Launcher`` protocol: local and hosts over Gloo, Spark tasks), ``spec``
(what the driver hands the workers), ``checkpoints``. Worker side, run inside every Horovod
process: ``worker``, ``inputs``, ``model``, ``optim``, ``callbacks``, ``transfer`` (starting from
another model, freezing layers). ``balance`` (class weights, sampling rates) serves both, and
so does ``study`` (a tpe sweep's Optuna study: asked and told by the driver, reported to at
epoch ends by rank 0).
"""
