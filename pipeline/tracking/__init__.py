"""MLflow, and only here: every run, metric, artifact, model and alias goes through this package.

Public: ``tracker.Tracker`` (the store, built once from ``mlflow.*``), ``keys`` (every tag,
metric and artifact name stages hand to each other), ``runs`` (run lifecycle and lineage),
``registry`` (versions and aliases), ``models`` (loading logged models and the rule that a
model fits a dataset version), ``keras`` (rank-0 logging inside a Horovod worker), ``compare``
(the best runs and their UI page), ``ui`` (``pipeline ui``: exposure and basic auth).
Internal: ``params`` (redaction), ``reports`` (figures), ``retry``.
"""
