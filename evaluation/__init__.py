"""Evaluation: retrieval and zero-shot metrics, dataset loaders, and the synthetic sound library."""
