"""Ingest: turning what clients send into validated points."""
