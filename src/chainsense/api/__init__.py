"""HTTP API: app factory, routers, dependencies, error mapping."""

from chainsense.api.app import create_app

__all__ = ["create_app"]
