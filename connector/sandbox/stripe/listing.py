"""List and search endpoints as Stripe serves them.

Lists: newest first, ``limit`` 1..100 (default 10), cursor pagination with
``starting_after`` / ``ending_before`` (object ids), range filters such as
``created[gte]=…``; the answer is ``{object: "list", data, has_more, url}``.

Search: ``query`` in Stripe's search language (``metadata['order_id']:'123' AND
status:'open'``, ``email:'a@b.c'``, ``-status:'void'``, ``total>1000``, ``name~'acme'``),
``limit`` and an opaque ``page`` token; the answer is
``{object: "search_result", data, has_more, next_page, url}``.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from connector.sandbox.stripe.wire import ApiError, Params, bad_param, invalid
from connector.sandbox.stripe.world import Account, World

Item = dict[str, Any]


def range_filter(p: Params, key: str) -> Callable[[Item], bool] | None:
    """``key=…`` (exact) or ``key[gt|gte|lt|lte]=…`` on an integer field of the objects."""
    if not p.has(key):
        return None
    raw = p.raw(key)
    if isinstance(raw, dict):
        sub = Params(raw, prefix=key).only("gt", "gte", "lt", "lte")
        bounds = {op: sub.int(op) for op in ("gt", "gte", "lt", "lte")}

        def check(item: Item) -> bool:
            value = item.get(key)
            if value is None:
                return False
            return (
                (bounds["gt"] is None or value > bounds["gt"])
                and (bounds["gte"] is None or value >= bounds["gte"])
                and (bounds["lt"] is None or value < bounds["lt"])
                and (bounds["lte"] is None or value <= bounds["lte"])
            )

        return check
    exact = p.int(key)
    return lambda item: item.get(key) == exact


def paginate(
    world: World,
    account: Account,
    p: Params,
    items: Iterable[Item],
    *,
    url: str,
    version: str,
    render: Callable[[Item], Item] | None = None,
) -> dict[str, Any]:
    """One page of ``items`` (already filtered, newest first)."""
    limit = p.int("limit", 10)
    assert limit is not None
    if limit < 1 or limit > 100:
        raise bad_param(
            "This value must be greater than or equal to 1." if limit < 1 else "This value must be less than or equal to 100.",
            param="limit",
            code="parameter_invalid_integer",
        )
    starting_after, ending_before = p.str("starting_after"), p.str("ending_before")
    if starting_after and ending_before:
        raise invalid("You may only specify one of these parameters: ending_before, starting_after.")
    ordered = list(items)
    ids = [item["id"] for item in ordered]
    if starting_after:
        if starting_after not in ids:
            raise _bad_cursor(starting_after, "starting_after")
        start = ids.index(starting_after) + 1
        page = ordered[start : start + limit]
        has_more = start + limit < len(ordered)
    elif ending_before:
        if ending_before not in ids:
            raise _bad_cursor(ending_before, "ending_before")
        end = ids.index(ending_before)
        begin = max(0, end - limit)
        page = ordered[begin:end]
        has_more = begin > 0
    else:
        page = ordered[:limit]
        has_more = limit < len(ordered)
    draw = render or (lambda item: world.render(account, item, version))
    return {"object": "list", "data": [draw(item) for item in page], "has_more": has_more, "url": url}


def _bad_cursor(object_id: str, param: str) -> ApiError:
    return ApiError(400, "invalid_request_error", f"No such object: '{object_id}'", code="resource_missing", param=param)


# ---------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------

_TOKEN = re.compile(
    r"""\s*(?:
        (?P<and>AND\b) | (?P<or>OR\b)
      | (?P<clause>
          (?P<neg>-)?
          (?P<field>metadata\[(?P<q1>['"])(?P<mkey>.*?)(?P=q1)\]|[a-z_][a-z0-9_.]*)
          \s*(?P<op>>=|<=|:|~|>|<)\s*
          (?:(?P<q2>['"])(?P<sval>.*?)(?P=q2)|(?P<nval>-?\d+)|(?P<null>null))
        )
    )""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    field: str
    metadata_key: str | None
    op: str
    value: str | int | None
    negate: bool

    def matches(self, item: Item) -> bool:
        if self.metadata_key is not None:
            actual: Any = (item.get("metadata") or {}).get(self.metadata_key)
        else:
            actual = item.get(self.field)
        result = self._compare(actual)
        return not result if self.negate else result

    def _compare(self, actual: Any) -> bool:
        if self.value is None:
            return actual is None
        if self.op == ":":
            if isinstance(self.value, int) and isinstance(actual, int):
                return actual == self.value
            # Stripe: ":" is an exact match, case-insensitive for strings.
            return actual is not None and str(actual).lower() == str(self.value).lower()
        if self.op == "~":
            return actual is not None and str(self.value).lower() in str(actual).lower()
        if not isinstance(actual, int):
            return False
        number = int(self.value)
        return {">": actual > number, "<": actual < number, ">=": actual >= number, "<=": actual <= number}[self.op]


def parse_query(query: str, fields: frozenset[str]) -> tuple[list[Clause], str]:
    """Clauses and their connective ("AND"/"OR"; Stripe does not allow mixing them)."""
    clauses: list[Clause] = []
    connectives: set[str] = set()
    pos, expect_clause = 0, True
    text = query.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise _query_error(query, f"unexpected input at position {pos}")
        if match.group("clause"):
            if not expect_clause:
                connectives.add("AND")  # Stripe treats whitespace between clauses as AND
            field_name = match.group("field")
            mkey = match.group("mkey")
            base = "metadata" if mkey is not None else field_name
            if base not in fields:
                raise _query_error(query, f"the field '{field_name}' is not supported for this resource")
            value: str | int | None
            if match.group("null"):
                value = None
            elif match.group("nval") is not None:
                value = int(match.group("nval"))
            else:
                value = match.group("sval")
            clauses.append(Clause(base, mkey, match.group("op"), value, bool(match.group("neg"))))
            expect_clause = False
        else:
            if expect_clause:
                raise _query_error(query, "a connective must follow a clause")
            connectives.add("AND" if match.group("and") else "OR")
            expect_clause = True
        pos = match.end()
    if not clauses or expect_clause and connectives:
        raise _query_error(query, "the query is empty or ends with a connective")
    if len(connectives) > 1:
        raise _query_error(query, "AND and OR cannot be combined in one query")
    return clauses, (connectives.pop() if connectives else "AND")


def _query_error(query: str, why: str) -> ApiError:
    return ApiError(
        400, "invalid_request_error", f"Invalid search query '{query}': {why}.", param="query", saved=False
    )


def search(
    world: World,
    account: Account,
    p: Params,
    items: Iterable[Item],
    *,
    fields: frozenset[str],
    url: str,
    version: str,
) -> dict[str, Any]:
    p.only("query", "limit", "page", "expand")
    query = p.req_str("query")
    clauses, connective = parse_query(query, fields)
    limit = p.int("limit", 10)
    assert limit is not None
    if limit < 1 or limit > 100:
        raise bad_param("This value must be between 1 and 100.", param="limit", code="parameter_invalid_integer")
    offset = _decode_page(p.str("page"))
    lag = world.settings.search_lag_s
    now = time.monotonic()
    combine = all if connective == "AND" else any
    hits = [
        item
        for item in items
        if (lag <= 0 or now - account.searchable_at.get(item["id"], 0.0) >= lag)
        and combine(clause.matches(item) for clause in clauses)
    ]
    page = hits[offset : offset + limit]
    has_more = offset + limit < len(hits)
    return {
        "object": "search_result",
        "data": [world.render(account, item, version) for item in page],
        "has_more": has_more,
        "next_page": _encode_page(offset + limit) if has_more else None,
        "url": url,
        "_total_count": len(hits),
    }


def _encode_page(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode().rstrip("=")


def _decode_page(token: str | None) -> int:
    if not token:
        return 0
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        kind, _, number = raw.partition(":")
        if kind != "offset":
            raise ValueError(raw)
        return int(number)
    except (ValueError, UnicodeDecodeError):
        raise bad_param(f"Invalid page token: {token}", param="page", code=None) from None
