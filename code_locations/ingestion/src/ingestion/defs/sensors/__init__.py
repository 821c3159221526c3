"""Sensors of the ingestion location."""
