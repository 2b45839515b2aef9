"""JSON for the sandbox's responses: Decimal written as a JSON number (never via float),
and pre-encoded fragments (``Raw``) embedded verbatim, so query pages are assembled from
per-record strings without building one large object tree."""

from __future__ import annotations

import json
from decimal import Decimal
from json.encoder import encode_basestring_ascii as _quote  # type: ignore[attr-defined]
from typing import Any


class Raw(str):
    """An already-encoded JSON fragment."""


def _number(d: Decimal) -> str:
    text = format(d, "f")
    return text


def encode(obj: Any) -> str:
    if isinstance(obj, Raw):
        return str(obj)
    if isinstance(obj, str):
        return _quote(obj)
    if obj is None:
        return "null"
    if obj is True:
        return "true"
    if obj is False:
        return "false"
    if isinstance(obj, int):
        return str(obj)
    if isinstance(obj, Decimal):
        return _number(obj)
    if isinstance(obj, float):
        return repr(obj)
    if isinstance(obj, dict):
        return "{" + ",".join(f"{_quote(str(k))}:{encode(v)}" for k, v in obj.items()) + "}"
    if isinstance(obj, (list, tuple)):
        return "[" + ",".join(encode(v) for v in obj) + "]"
    raise TypeError(f"cannot encode {type(obj).__name__}")


def record_encoder(sobject: str, fields: list[str], api_version: str) -> Any:
    """A function row -> JSON text of a query record, with Salesforce's attributes block."""
    prefix = '{"attributes":{"type":' + _quote(sobject) + ',"url":' + _quote(
        f"/services/data/v{api_version}/sobjects/{sobject}/"
    )[:-1]
    keys = [(f, "," + _quote(f) + ":") for f in fields]

    def enc(row: dict[str, Any]) -> str:
        parts = [prefix, row["Id"], '"}']
        for name, key in keys:
            v = row.get(name)
            parts.append(key)
            if v is None:
                parts.append("null")
            elif isinstance(v, str):
                parts.append(_quote(v))
            elif v is True:
                parts.append("true")
            elif v is False:
                parts.append("false")
            elif isinstance(v, Decimal):
                parts.append(_number(v))
            else:
                parts.append(encode(v))
        parts.append("}")
        return "".join(parts)

    return enc


def loads(body: bytes) -> Any:
    """Parse a request body; numbers with a fraction become Decimal, as on the platform."""
    return json.loads(body, parse_float=Decimal)
