"""Ingest: raw inputs -> cleaned records -> a dataset version.

Per-record logic (``images``, ``split``, ``labels``) is plain Python; ``image_job`` wires it
into Spark.
"""
