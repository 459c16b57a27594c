"""Scheduled retraining: input snapshots, the lock, and the workflow that ties the stages."""
