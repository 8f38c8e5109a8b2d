"""Telemetry: reading schemas, the ingest pipeline."""
