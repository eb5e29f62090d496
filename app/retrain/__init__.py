"""Retraining from stored feedback and benchmark folders: data, training, gate, promotion."""
