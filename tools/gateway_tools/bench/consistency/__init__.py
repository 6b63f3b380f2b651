"""Consistency benchmark: fine-tuned + constrained against prompt-only baselines."""
