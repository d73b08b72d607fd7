"""The cabinet (customer pages) and the operator console, server-rendered on the gateway's own server."""

from gateway.web.app import build_web_app

__all__ = ["build_web_app"]
