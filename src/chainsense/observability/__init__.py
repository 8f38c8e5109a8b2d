"""Metrics, logs and traces. Domain code records through :mod:`chainsense.observability.metrics`;
only the API exposes them over HTTP."""
