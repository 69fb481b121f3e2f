"""Ingest paths (HTTP publish, Kafka): they only parse, route and publish to the bus."""
