"""Plain HTTP endpoints: errors, service authentication, health and metrics."""
