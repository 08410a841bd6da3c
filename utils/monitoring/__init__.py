"""Watching a deployed model: drift statistics, diagnostics, the prediction log, report plots."""
