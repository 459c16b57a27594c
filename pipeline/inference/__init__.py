"""Batch inference: raw files -> ingest's own preprocessing -> a model -> Parquet predictions.

Public: ``job.predict_files``. Internal: ``records`` (plain Python, per input).
"""
