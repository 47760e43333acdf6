"""The edges people touch: the CLI (and, later, the HTTP API and pages)."""
