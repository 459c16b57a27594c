"""Batch inference: raw files -> ingest's own preprocessing -> a model -> Parquet predictions."""
