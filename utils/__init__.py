"""Shared code of the pipeline steps: config and paths, tracking, schemas, IO, model store.

Kept free of import-time side effects and heavy imports so that cheap callers (cron ticks,
the API's health route) stay cheap.
"""
