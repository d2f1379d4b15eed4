"""Ingestion: parse a batch, run every event through the named steps, write durably."""
