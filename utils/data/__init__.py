"""Reading, validating and recording raw data: content hashes, the ingest record, tabular and NLU formats."""
