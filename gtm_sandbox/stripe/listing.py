"""List and search endpoints as Stripe serves them.

Lists: newest first, ``limit`` 1..100 (default 10), cursor pagination with
``starting_after`` / ``ending_before`` (ids of existing objects of the listed kind, even
ones the filters now leave out), range filters such as ``created[gte]=…``; the answer is
``{object: "list", data, has_more, url}``.

Search: ``query`` in Stripe's search language (``metadata['order_id']:'123' AND
status:'open'``, ``email:'a@b.c'``, ``-status:'void'``, ``total>1000``, ``name~'acme'``,
``-metadata['k']:null``; keywords and ``null`` in any case, ``\'`` escapes a quote, each
field typed token/string/numeric with the operators Stripe allows on it), ``limit`` and an
opaque ``page`` token; the answer is ``{object: "search_result", data, has_more, next_page, url}``.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from gtm_sandbox.stripe.wire import ApiError, Params, bad_param, invalid
from gtm_sandbox.stripe.world import Account, World

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
            "This value must be greater than or equal to 1." if limit < 1
            else "This value must be less than or equal to 100.",
            param="limit",
            code="parameter_invalid_integer",
        )
    starting_after, ending_before = p.str("starting_after"), p.str("ending_before")
    if starting_after and ending_before:
        raise invalid("Received both starting_after and ending_before parameters. Please pass in only one.")
    ordered = list(items)
    kind = listed_kind(url)
    if starting_after:
        at, found = _locate(account, ordered, starting_after, "starting_after", kind)
        start = at + 1 if found else at
        page = ordered[start : start + limit]
        has_more = start + limit < len(ordered)
    elif ending_before:
        end, _ = _locate(account, ordered, ending_before, "ending_before", kind)
        begin = max(0, end - limit)
        page = ordered[begin:end]
        has_more = begin > 0
    else:
        page = ordered[:limit]
        has_more = limit < len(ordered)
    draw = render or (lambda item: world.render(account, item, version))
    return {"object": "list", "data": [draw(item) for item in page], "has_more": has_more, "url": url}


def listed_kind(url: str) -> str:
    """The kind of object a list URL holds: ``/v1/invoiceitems`` -> ``invoiceitem``,
    ``/v1/invoices/in_…/lines`` -> ``line_item``."""
    last = url.rstrip("/").rsplit("/", 1)[-1]
    return "line_item" if last == "lines" else last.removesuffix("s")


def _locate(account: Account, ordered: list[Item], cursor: str, param: str, kind: str) -> tuple[int, bool]:
    """(index of ``cursor`` in ``ordered``, True), or (where it would sit, False) when the
    filters leave it out: a cursor is any existing object of the listed kind and marks a
    place in creation order, so paging on survives an object that changed meanwhile (an
    invoice paid while a client pages through ``status=open``)."""
    for index, item in enumerate(ordered):
        if item["id"] == cursor:
            return index, True
    target = account.get(cursor)
    if target is None or target["object"] != kind:  # the message names the listed kind, even for an empty list
        raise _bad_cursor(cursor, param, kind)
    seq = {object_id: n for n, object_id in enumerate(account.objects[target["object"]])}
    mark = seq[cursor]
    descending = len(ordered) < 2 or seq[ordered[0]["id"]] > seq[ordered[-1]["id"]]
    return sum(1 for item in ordered if (seq[item["id"]] > mark) == descending), False


def _bad_cursor(object_id: str, param: str, kind: str) -> ApiError:
    return ApiError(400, "invalid_request_error", f"No such {kind}: '{object_id}'", code="resource_missing",
                    param=param)


# ---------------------------------------------------------------------------------------
# Search
# ---------------------------------------------------------------------------------------

_QUOTED = r"""'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*\""""
_TOKEN = re.compile(
    rf"""\s*(?:
        (?P<and>(?i:AND)\b) | (?P<or>(?i:OR)\b)
      | (?P<clause>
          (?P<neg>-)?
          (?P<field>metadata\[(?P<mkey>{_QUOTED})\]|[a-z_][a-z0-9_.]*)
          \s*(?P<op>>=|<=|:|~|>|<)\s*
          (?:(?P<sval>{_QUOTED})|(?P<nval>-?\d+)\b|(?P<null>(?i:null))\b)
        )
    )""",
    re.VERBOSE,
)
_ESCAPE = re.compile(r"\\(.)")
COMPARATORS = (">", "<", ">=", "<=")

# Field types of Stripe's search language: a token matches exactly, a string matches its
# words in order (``name:"acme"`` finds "Acme Corp") or by substring (``~``), a numeric
# compares; every comparison is case-insensitive.
TOKEN, STRING, NUMERIC = "token", "string", "numeric"


def _unquote(text: str) -> str:
    return _ESCAPE.sub(r"\1", text[1:-1])


def _words(text: str) -> list[str]:
    return text.lower().split()


@dataclass(frozen=True)
class Clause:
    field: str
    kind: str
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
        if self.value is None:  # `field:null`: the field is empty (a metadata key is absent)
            return actual is None or actual == ""
        if actual is None:
            return False
        if self.kind == NUMERIC:
            if not isinstance(actual, int):
                return False
            number = int(self.value)
            return {":": actual == number, ">": actual > number, "<": actual < number, ">=": actual >= number,
                    "<=": actual <= number}[self.op]
        wanted, text = str(self.value).lower(), str(actual).lower()
        if self.op == "~":
            return wanted in text
        if self.kind == STRING:
            words, have = _words(wanted), _words(text)
            if not words:
                return text == wanted
            return any(have[i : i + len(words)] == words for i in range(len(have) - len(words) + 1))
        return text == wanted


def parse_query(query: str, fields: dict[str, str]) -> tuple[list[Clause], str]:
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
            clauses.append(_clause(query, match, fields))
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


def _clause(query: str, match: re.Match[str], fields: dict[str, str]) -> Clause:
    field_name, op = match.group("field"), match.group("op")
    mkey = _unquote(match.group("mkey")) if match.group("mkey") is not None else None
    base = "metadata" if mkey is not None else field_name
    kind = fields.get(base)
    if kind is None:
        raise _query_error(query, f"the field '{field_name}' is not supported for this resource")
    value: str | int | None
    if match.group("null"):
        if op != ":":
            raise _query_error(query, f"null can only be matched with ':' ({field_name})")
        value = None
    elif match.group("nval") is not None:  # "Quotation marks are optional for numeric values."
        value = int(match.group("nval")) if kind == NUMERIC else match.group("nval")
    else:
        value = _unquote(match.group("sval"))
    if op == "~" and (kind != STRING or value is None or len(str(value)) < 3):
        raise _query_error(query, f"'~' needs a string field and at least 3 characters ({field_name})")
    if op in COMPARATORS and kind != NUMERIC:
        raise _query_error(query, f"'{op}' only applies to numeric fields ({field_name})")
    if kind == NUMERIC and value is not None:
        try:
            value = int(value)
        except ValueError:
            raise _query_error(query, f"'{field_name}' takes a number") from None
    return Clause(base, kind, mkey, op, value, bool(match.group("neg")))


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
    fields: dict[str, str],
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
