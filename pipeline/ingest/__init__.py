"""Ingest: raw inputs -> cleaned records -> a dataset version (every input accepted or
quarantined with a ``pipeline.datasets.reasons.Reason``).

Public (what other layers call):

* ``image_job.ingest_images`` and ``text_job.ingest_text``: the jobs (CLI, ``jobs/``, retrain,
  demo);
* ``report.summary_table`` and ``report.bad_fraction``: the end-of-job summary and its gate;
* for inference and ``pipeline explain``, which prepare inputs exactly as ingest did:
  ``model_input.preparer`` (one raw input -> the model's input), ``tokens.Tokenizer``,
  ``discover`` (``is_hidden``, ``placement_problem``, ``size_problem``) and
  ``rejection.Rejected``.

Internal: the per-record plain Python (``images``, ``image_records``, ``text``,
``text_records``, ``tokens``, ``rows``, ``labels``, ``split``, ``discover``, ``dedup``) and
the Spark wiring (``image_job``/``text_job`` helpers, ``spark_dedup``, ``spark_labels``).
Listing and reading raw files through Spark is the Spark adapter's (``pipeline.spark.listing``,
``pipeline.spark.files``).
"""
