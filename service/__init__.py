"""Tacit's I/O layer: HTTP API, ingestion pipeline, storage, retention and the CLI."""
