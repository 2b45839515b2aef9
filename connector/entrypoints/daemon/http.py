"""Moved: the daemon's HTTP app is ``connector.entrypoints.daemon.app`` (route table) on the
server of ``connector.entrypoints.http_server`` (cheroot). The names stay importable here."""

from connector.entrypoints.daemon.app import ROUTES, HttpEndpoint, Probes, Route, make_app
from connector.entrypoints.http_server import WsgiApp

__all__ = ["ROUTES", "HttpEndpoint", "Probes", "Route", "WsgiApp", "make_app"]
