"""The org API's request and response, independent of the HTTP server."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from gtm_sandbox.org.data import ApiError
from gtm_sandbox.org.jsonenc import encode, loads


@dataclass
class Request:
    method: str
    path: str  # decoded, for matching prefixes and messages
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes = b""
    segments: list[str] = field(default_factory=list)  # split before decoding: ids may hold '/'

    @classmethod
    def build(cls, method: str, target: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Request:
        parts = urlsplit(target)
        segments = [unquote(s) for s in parts.path.split("/") if s]
        return cls(method.upper(), unquote(parts.path), parse_qs(parts.query, keep_blank_values=True),
                   {k.lower(): v for k, v in (headers or {}).items()}, body, segments)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return loads(self.body)
        except ValueError as exc:
            raise ApiError(400, "JSON_PARSER_ERROR", f"The request body isn't valid JSON: {exc}") from None


@dataclass
class Response:
    status: int
    body: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json;charset=UTF-8"

    @classmethod
    def json(cls, status: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(status, encode(obj), headers or {})

    @classmethod
    def error(cls, err: ApiError) -> Response:
        return cls.json(err.status, err.body(), dict(err.headers))


def weighted(header: str | None) -> list[tuple[str, float]]:
    """An Accept or Accept-Encoding header's items, lower-cased, each with its q value (1 by
    default, 0 when unreadable), in the order listed."""
    items = []
    for item in (header or "").split(","):
        name, _, params = item.strip().partition(";")
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key.lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if name.strip():
            items.append((name.strip().lower(), q))
    return items
