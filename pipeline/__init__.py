"""Raw images and text -> Spark ingest -> Petastorm datasets -> Horovod/Keras training -> MLflow."""

__version__ = "0.1.0"
