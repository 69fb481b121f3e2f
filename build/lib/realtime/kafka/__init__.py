"""Kafka plumbing shared by the consumer (ingest) and the producer (requests, dead letters)."""
