"""Load-test scripts (run with `python -m loadtest.<name>`)."""
