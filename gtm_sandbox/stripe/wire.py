"""Stripe's wire conventions: bracket-notation form bodies, parameter coercion, error bodies
and object ids.

Stripe's v1 API takes ``application/x-www-form-urlencoded`` bodies (and query strings)
where nesting is spelled with brackets: ``metadata[order_id]=…``, ``lines[0][amount]=…``,
``expand[]=…`` (the Python SDK sends indexed arrays, ``expand[0]=…``; both are accepted).
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

_ALNUM = string.ascii_letters + string.digits
MAX_DECIMAL_PLACES = 12  # decimal amounts such as unit_amount_decimal
# Stripe's integers are 64-bit: a larger value is not an integer it can read.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# An API version as Stripe names them: a date, an optional release name, optional betas
# (``2026-10-28.endive``, ``2024-06-20``, ``2025-03-31.basil; some_beta=v1``).
API_VERSION = re.compile(r"\d{4}-\d{2}-\d{2}(\.[a-z]+)?(;\s*\w+=\w+)*")


def new_id(prefix: str, length: int = 24) -> str:
    """An id shaped like Stripe's: ``in_`` + 24 base62 characters."""
    return prefix + "_" + "".join(secrets.choice(_ALNUM) for _ in range(length))


def new_secret(prefix: str, length: int = 32) -> str:
    return prefix + "_" + "".join(secrets.choice(_ALNUM) for _ in range(length))


@dataclass
class ApiError(Exception):
    """An error answered with Stripe's body ``{"error": {type, code, message, param}}``.

    ``saved`` tells the idempotency layer whether the endpoint had begun executing: Stripe
    saves the result of a keyed request only then, so parameter validation errors are not
    replayed for the same key (the client may fix the request and retry)."""

    status: int
    type: str
    message: str
    code: str | None = None
    param: str | None = None
    decline_code: str | None = None
    saved: bool = True
    # More documented attributes of the error object, e.g. a card error's failed ``charge``
    # (its id) and ``payment_intent`` (the object).
    extra: dict[str, Any] | None = None

    def body(self, request_log_url: str | None = None) -> dict[str, Any]:
        err: dict[str, Any] = {"type": self.type, "message": self.message}
        if self.code is not None:
            err["code"] = self.code
            err["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            err["param"] = self.param
        if self.decline_code is not None:
            err["decline_code"] = self.decline_code
        if request_log_url:
            err["request_log_url"] = request_log_url
        err.update(self.extra or {})
        return {"error": err}


def invalid(message: str, *, param: str | None = None, code: str | None = None, status: int = 400) -> ApiError:
    """An ``invalid_request_error`` raised while executing (saved for idempotent replay)."""
    return ApiError(status, "invalid_request_error", message, code=code, param=param)


def bad_param(message: str, *, param: str, code: str | None) -> ApiError:
    """A parameter validation error (not saved under the idempotency key, as on Stripe)."""
    return ApiError(400, "invalid_request_error", message, code=code, param=param, saved=False)


def missing(param: str) -> ApiError:
    return bad_param(f"Missing required param: {param}.", param=param, code="parameter_missing")


def unknown_param(param: str) -> ApiError:
    return bad_param(f"Received unknown parameter: {param}", param=param, code="parameter_unknown")


def version_error(version: str, *, param: str | None = None) -> ApiError | None:
    """Stripe's answer to an API version it cannot read (``Stripe-Version`` or a webhook
    endpoint's ``api_version``), or None for a well-formed one."""
    if API_VERSION.fullmatch(version):
        return None
    return ApiError(400, "invalid_request_error", f"Invalid Stripe API version: {version}", param=param, saved=False)


def no_such(kind: str, object_id: str, *, param: str = "id") -> ApiError:
    return ApiError(404, "invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing",
                    param=param)


# ---------------------------------------------------------------------------------------
# Bracket-notation decoding
# ---------------------------------------------------------------------------------------


def _split_key(key: str) -> list[str]:
    """``lines[0][price_data][currency]`` -> ``["lines", "0", "price_data", "currency"]``;
    ``expand[]`` -> ``["expand", ""]``."""
    head, sep, rest = key.partition("[")
    parts = [head]
    if not sep:
        return parts
    rest = "[" + rest
    while rest:
        if not rest.startswith("["):
            # Text after a closing bracket names one more level, as Rack reads it for Stripe
            # (`metadata[a]b]` is `metadata[a][b]`), rather than being dropped.
            head, _, tail = rest.partition("[")
            if head.strip("]"):  # stray closing brackets alone are dropped, as by Rack
                parts.append(head.strip("]"))
            rest = "[" + tail if tail else ""
            continue
        end = rest.find("]")
        if end < 0:
            break
        parts.append(rest[1:end])
        rest = rest[end + 1 :]
    return parts


_FREE_FORM = frozenset({"metadata", "invoice_metadata"})


def _listify(node: Any) -> Any:
    """Dicts whose keys are all array indexes (or ``[]`` appends) become lists, in index order.
    Metadata hashes keep their keys, even numeric ones."""
    if isinstance(node, dict):
        converted = {k: (v if k in _FREE_FORM else _listify(v)) for k, v in node.items()}
        if converted and all(isinstance(k, str) and k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    if isinstance(node, list):
        return [_listify(v) for v in node]
    return node


def _has_path(node: dict[str, Any], keys: list[str]) -> bool:
    for key in keys:
        if key == "" or not isinstance(node, dict) or key not in node:
            return False
        node = node[key]
    return True


def _array_slot(container: dict[str, Any], where: tuple[str, ...], rest: list[str],
                appends: dict[tuple[str, ...], int]) -> str:
    """The index an empty ``[]`` stands for. A bare ``name[]`` appends; in an array of hashes
    (``lines[][amount]=1&lines[][description]=a&lines[][amount]=2``) the keys fill the last
    hash until one it already has starts the next, as Rack decodes them for Stripe."""
    count = appends.get(where, 0)
    if rest and count:
        last = container.get(str(count - 1))
        if isinstance(last, dict) and not _has_path(last, rest):
            return str(count - 1)
    appends[where] = count + 1
    return str(count)


def decode_params(raw: str) -> dict[str, Any]:
    """Decode a form body or query string into nested dicts and lists of strings.

    Empty values are kept (``metadata[key]=`` unsets a key on Stripe). ``name[]`` takes the
    next index under its parent (see ``_array_slot``), then index-keyed dicts become lists."""
    root: dict[str, Any] = {}
    appends: dict[tuple[str, ...], int] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        if not key:  # `=x` names nothing: Rack, which reads Stripe's forms, skips it
            continue
        parts = _split_key(key)
        node: dict[str, Any] = root
        where: tuple[str, ...] = ()
        for i, part in enumerate(parts):
            if part == "" and i > 0:
                part = _array_slot(node, where, parts[i + 1 :], appends)
            where += (part,)
            if i == len(parts) - 1:
                node[part] = value
                break
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
    return _listify(root)


# ---------------------------------------------------------------------------------------
# Parameter access with Stripe's validation errors
# ---------------------------------------------------------------------------------------


class Params:
    """Typed access to a decoded parameter tree, raising Stripe's validation errors.

    ``allowed`` lists accepted top-level names; anything else is ``parameter_unknown``, as on
    Stripe, so a client sending a misspelt parameter fails here the way it would there."""

    def __init__(self, data: Mapping[str, Any], *, prefix: str = "") -> None:
        self.data = dict(data)
        self.prefix = prefix

    def name(self, key: str) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else key

    def only(self, *allowed: str) -> Params:
        for key in self.data:
            if key not in allowed:
                raise unknown_param(self.name(key))
        return self

    def has(self, key: str) -> bool:
        return key in self.data

    def raw(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def str(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise missing(self.name(key))
            return default
        if not isinstance(value, str):
            raise bad_param(f"Invalid string: {value!r}", param=self.name(key), code=None)
        return value

    def req_str(self, key: str) -> str:
        value = self.str(key, required=True)
        assert value is not None
        if value == "":
            raise bad_param(
                f"You passed an empty string for '{self.name(key)}'. We assume empty values are an "
                "attempt to unset a parameter; however '" + self.name(key) + "' cannot be unset.",
                param=self.name(key),
                code="parameter_invalid_empty",
            )
        return value

    def int(
        self, key: str, default: int | None = None, *, required: bool = False, minimum: int | None = None
    ) -> int | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise missing(self.name(key))
            return default
        try:
            number = int(str(value), 10)
        except ValueError:
            raise bad_param(f"Invalid integer: {value}", param=self.name(key),
                            code="parameter_invalid_integer") from None
        if not INT64_MIN <= number <= INT64_MAX:
            raise bad_param(f"Invalid integer: {value}", param=self.name(key), code="parameter_invalid_integer")
        if minimum is not None and number < minimum:
            raise bad_param(
                f"This value must be greater than or equal to {minimum}.",
                param=self.name(key),
                code="parameter_invalid_integer",
            )
        return number

    def req_int(self, key: str, *, minimum: int | None = None) -> int:
        value = self.int(key, required=True, minimum=minimum)
        assert value is not None
        return value

    def decimal(self, key: str) -> Decimal | None:
        value = self.data.get(key)
        if value is None:
            return None
        try:
            number = Decimal(str(value))
        except InvalidOperation:
            raise bad_param(f"Invalid decimal: {value}", param=self.name(key), code=None) from None
        if not number.is_finite():
            raise bad_param(f"Invalid decimal: {value}", param=self.name(key), code=None)
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and exponent < -MAX_DECIMAL_PLACES:
            raise bad_param(f"Invalid decimal: {value} (at most {MAX_DECIMAL_PLACES} decimal places)",
                            param=self.name(key), code=None)
        return number

    def bool(self, key: str, default: bool | None = None) -> bool | None:
        value = self.data.get(key)
        if value is None:
            return default
        if value in ("true", True):
            return True
        if value in ("false", False):
            return False
        raise bad_param(f"Invalid boolean: {value}", param=self.name(key), code=None)

    def choice(self, key: str, options: tuple[str, ...], default: str | None = None) -> str | None:
        value = self.str(key, default)
        if value is not None and value not in options:
            raise bad_param(
                f"Invalid {self.name(key)}: must be one of {', '.join(options)}",
                param=self.name(key),
                code=None,
            )
        return value

    def sub(self, key: str, *, required: bool = False) -> Params | None:
        value = self.data.get(key)
        if value is None:
            if required:
                raise missing(self.name(key))
            return None
        if not isinstance(value, dict):
            raise bad_param(f"Invalid object: {self.name(key)}", param=self.name(key), code=None)
        return Params(value, prefix=self.name(key))

    def list(self, key: str) -> list[Any] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, list):
            return value
        if value == "":  # `name=` empties (unsets) an array
            return []
        # A single value (`expand=customer`) or a hash (`lines[a][amount]=…`) where an array
        # belongs is Stripe's "Invalid array": only `name[]=` or `name[0]=` make one.
        raise bad_param("Invalid array", param=self.name(key), code=None)

    def expand(self) -> list[str]:
        return [str(x) for x in (self.list("expand") or [])]


METADATA_MAX_KEYS = 50


def apply_metadata(current: dict[str, str], raw: Any, *, param: str = "metadata") -> dict[str, str]:
    """Stripe's metadata update: keys merge, an empty value unsets a key, ``metadata=""``
    unsets all. At most 50 keys, keys ≤ 40 characters without square brackets, values ≤ 500
    characters."""
    if raw is None:
        return current
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise bad_param("Invalid hash", param=param, code=None)
    merged = dict(current)
    for key, value in raw.items():
        if not isinstance(value, str):
            raise bad_param(f"Invalid metadata value for {key}", param=f"{param}[{key}]", code=None)
        if "[" in key or "]" in key:  # "you can't use square brackets ([ and ]) in keys"
            raise bad_param(f"Metadata keys can't contain square brackets ([ and ]): {key}", param=f"{param}[{key}]",
                            code=None)
        if len(key) > 40:
            raise bad_param(
                f"Metadata keys must be 40 characters or less: {key}", param=f"{param}[{key}]", code=None
            )
        if len(value) > 500:
            raise bad_param(
                f"Metadata values must be 500 characters or less: {key}", param=f"{param}[{key}]", code=None
            )
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    if len(merged) > METADATA_MAX_KEYS:
        raise bad_param("You can have at most 50 metadata keys.", param=param, code=None)
    return merged
