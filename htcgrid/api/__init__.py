"""The HTTP layer: the app factory (app.py), one router per resource, the middleware that
enforces body size and request rate, and the server that runs it all."""

from htcgrid.api.app import create_app

__all__ = ["create_app"]
