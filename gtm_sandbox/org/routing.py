"""Route tables for the org's REST and control APIs: method + path template -> handler.

Templates are path segments with ``{name}`` placeholders (``sobjects/{obj}/{rid}``),
matched against the request's segments, which are split *before* percent-decoding since
record ids and external id values may hold ``/``. That rules out matching regexes (or
``werkzeug.routing``) against the decoded path; a list of segment templates is all the
org needs. As in the Stripe sandbox's router, literal segments win over placeholders
(``sobjects/{obj}/describe`` before ``sobjects/{obj}/{rid}``), whatever the order of
registration.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ANY = "*"  # a route that takes every method


@dataclass(frozen=True)
class Route:
    method: str
    segments: tuple[str, ...]
    endpoint: str  # the name in counters and fault rules ("sobject_get", "query_more", ...)
    handler: Callable[..., Any]
    when: Callable[[dict[str, str]], bool] | None = None  # a condition on the placeholders' values

    @property
    def placeholders(self) -> int:
        return sum(1 for s in self.segments if s.startswith("{"))

    def match(self, method: str, parts: Sequence[str]) -> dict[str, str] | None:
        if self.method not in (ANY, method) or len(parts) != len(self.segments):
            return None
        params: dict[str, str] = {}
        for template, part in zip(self.segments, parts, strict=True):
            if template.startswith("{"):
                params[template[1:-1]] = part
            elif template != part:
                return None
        if self.when is not None and not self.when(params):
            return None
        return params


class RouteTable:
    def __init__(self) -> None:
        self.routes: list[Route] = []

    def add(self, method: str, template: str, endpoint: str, handler: Callable[..., Any], *,
            when: Callable[[dict[str, str]], bool] | None = None) -> None:
        segments = tuple(s for s in template.split("/") if s)
        self.routes.append(Route(method, segments, endpoint, handler, when))
        self.routes.sort(key=lambda r: r.placeholders)  # stable: literal segments first

    def match(self, method: str, parts: Sequence[str]) -> tuple[Route, dict[str, str]] | None:
        for route in self.routes:
            params = route.match(method, parts)
            if params is not None:
                return route, params
        return None

    def allowed(self, parts: Sequence[str]) -> list[str]:
        """The methods some route takes at ``parts``, in the order Salesforce's 405 names them
        (HEAD with every GET): a wrong method there is a 405, none at all a 404."""
        methods = {r.method for r in self.routes if r.method != ANY and r.match(r.method, parts) is not None}
        if "GET" in methods:
            methods.add("HEAD")
        return [m for m in _METHOD_ORDER if m in methods]


_METHOD_ORDER = ("HEAD", "GET", "PATCH", "POST", "PUT", "DELETE")
