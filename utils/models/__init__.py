"""Models after training: the model store, the registry alias, scoring and metrics."""
