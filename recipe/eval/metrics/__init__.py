"""Evaluation metrics, one per module, as the reference evaluations compute them (pure functions)."""
