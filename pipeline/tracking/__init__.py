"""Everything MLflow: store checks and run lifecycle (driver), epoch logging and model (rank 0)."""
