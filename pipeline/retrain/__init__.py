"""Scheduled retraining, a workflow over the stages: input snapshots, the lock, and the steps.

Public: ``workflow.retrain``. Internal: ``inputs`` (what changed), ``lock`` (one at a time).
"""
