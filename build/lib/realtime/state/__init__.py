"""State shared by all gateways of an instance (or, with Redis, of all instances)."""
