"""A SOQL subset for the sandbox org: parse once, compile to Python predicates.

Supported: ``SELECT`` field list (``FIELDS(ALL|CUSTOM|STANDARD)`` among the names, API
v51.0+, ALL and CUSTOM with a LIMIT of at most 200) or ``COUNT()``, ``FROM``, ``WHERE`` with
AND / OR / NOT and parentheses (mixing AND and OR needs parentheses, as in Salesforce),
``= != <> < <= > >=``, ``IN`` / ``NOT IN``, ``LIKE``, ``NULL``, ``TRUE``/``FALSE``, numbers,
strings (with SOQL's backslash escapes; an unknown escape is an error), date and datetime
literals and every calendar date literal (TODAY, THIS_WEEK, LAST_N_MONTHS:n, N_YEARS_AGO:n,
the fiscal ones as the calendar's ...: days of the org's clock, in UTC, weeks from Sunday);
``ORDER BY`` several fields with ASC/DESC and NULLS FIRST/LAST; ``LIMIT``; ``OFFSET``;
a parent's fields through relationship names (``PartnerOrder.Name``, several levels up) in
SELECT, WHERE and ORDER BY; an alias after the object (``FROM SfdcPartnerOffer o``);
aggregate functions (COUNT(field), COUNT_DISTINCT, SUM, AVG, MIN, MAX, aliased or exprN)
with ``GROUP BY`` and ``HAVING`` (a grouped field may take an alias too), answered as
AggregateResult records; semi- and anti-joins (``Id IN (SELECT PartnerOrderId FROM ...)``). A
statement is at most 100,000 characters. Errors carry Salesforce's error codes
(MALFORMED_QUERY, INVALID_FIELD, INVALID_TYPE) and are raised as ``SoqlError``; a parse
error's message quotes the statement and its row and column, as the org's do.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from gtm_sandbox.org.ids import canonical_stamp, format_stamp, to_18
from gtm_sandbox.org.schema import FieldSpec, ObjectSpec, OrgSchema

Row = dict[str, Any]
Predicate = Callable[[Row], bool]


class SoqlError(Exception):
    def __init__(self, error_code: str, message: str):
        super().__init__(message)
        self.error_code = error_code
        self.message = message


_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^'\\]|\\.)*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:?\d{2}))
  | (?P<date>\d{4}-\d{2}-\d{2})
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),:])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
    """,
    re.VERBOSE,
)
_KEYWORDS = {
    "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "LIKE", "ORDER", "BY", "ASC", "DESC",
    "NULLS", "FIRST", "LAST", "LIMIT", "OFFSET", "NULL", "TRUE", "FALSE", "GROUP", "HAVING", "FOR",
    "WITH", "USING", "INCLUDES", "EXCLUDES", "UPDATE",
}


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    pos: int

    @property
    def upper(self) -> str:
        return self.text.upper()


def located(soql: str, pos: int, detail: str) -> str:
    """An error message as the org words a parse error: the statement, then where in it
    (rows and columns from 1), then what is wrong there."""
    row = soql.count("\n", 0, pos) + 1
    col = pos - (soql.rfind("\n", 0, pos) + 1) + 1
    return f"\n{soql}\nERROR at Row:{row}:Column:{col}\n{detail}"


def tokenize(soql: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(soql):
        m = _TOKEN.match(soql, pos)
        if not m:
            detail = f"unexpected token: {soql[pos:pos + 10].split()[0]!r}"
            raise SoqlError("MALFORMED_QUERY", located(soql, pos, detail))
        kind = m.lastgroup or ""
        if kind != "ws":
            tokens.append(Token(kind, m.group(), pos))
        pos = m.end()
    return tokens


# ---------------------------------------------------------------- AST


@dataclass(frozen=True)
class Literal:
    kind: str  # string number date datetime bool null daterange
    value: Any  # for daterange: (start date, end date exclusive)


@dataclass(frozen=True)
class Compare:
    field: str
    op: str
    value: Literal
    aggregate: Aggregate | None = None  # HAVING COUNT(Id) > 1: field is then "COUNT(Id)"


@dataclass(frozen=True)
class InList:
    field: str
    values: tuple[Literal, ...]
    negate: bool
    subquery: Any = None  # a semi-join (IN) or anti-join (NOT IN): SELECT one id field FROM ... WHERE ...


@dataclass(frozen=True)
class Like:
    field: str
    pattern: str


@dataclass(frozen=True)
class BoolOp:
    op: str  # AND / OR
    parts: tuple[Any, ...]


@dataclass(frozen=True)
class Not:
    part: Any


@dataclass(frozen=True)
class Aggregate:
    """An aggregate function in SELECT or ORDER BY: ``COUNT(Id)``, ``SUM(Subtotal) total``."""

    func: str  # COUNT, COUNT_DISTINCT, SUM, AVG, MIN, MAX
    field: str
    alias: str | None = None


@dataclass(frozen=True)
class OrderItem:
    field: str
    desc: bool = False
    nulls_first: bool | None = None
    aggregate: Aggregate | None = None  # ORDER BY COUNT(Id): field is then "COUNT(Id)"

    @property
    def effective_nulls_first(self) -> bool:
        # Salesforce: ASC puts nulls first, DESC puts them last, unless told otherwise.
        return (not self.desc) if self.nulls_first is None else self.nulls_first


@dataclass
class Query:
    sobject: str
    fields: list[str]
    count: bool = False
    alias: str | None = None  # FROM Object alias: "alias." may prefix field names
    group_by: list[str] = field(default_factory=list)
    having: Any = None
    aggregates: list[Aggregate] = field(default_factory=list)  # in SELECT, in order (fields has their keys)
    field_aliases: dict[int, str] = field(default_factory=dict)  # SELECT Status s: the field's place -> alias
    where: Any = None
    order_by: list[OrderItem] = field(default_factory=list)
    limit: int | None = None
    offset: int = 0


class _Parser:
    def __init__(self, soql: str, today: date | None = None):
        self.soql = soql
        self.tokens = tokenize(soql)
        self.i = 0
        self.today = today  # the org's day for TODAY, LAST_N_DAYS:n ... (None: the wall clock's, UTC)

    def fail(self, tok: Token | None, detail: str) -> SoqlError:
        """A MALFORMED_QUERY pointing at ``tok`` (None: the end of the statement)."""
        return SoqlError("MALFORMED_QUERY", located(self.soql, len(self.soql) if tok is None else tok.pos, detail))

    def peek(self, offset: int = 0) -> Token | None:
        j = self.i + offset
        return self.tokens[j] if j < len(self.tokens) else None

    def next(self) -> Token:
        tok = self.peek()
        if tok is None:
            raise self.fail(None, "unexpected token: '<EOF>'")
        self.i += 1
        return tok

    def accept(self, word: str) -> bool:
        tok = self.peek()
        if tok is not None and tok.upper == word and tok.kind in ("ident", "punct", "op"):
            self.i += 1
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.accept(word):
            tok = self.peek()
            raise self.fail(tok, f"unexpected token: {tok.text if tok else '<EOF>'!r}, expected {word}")

    def ident(self) -> str:
        tok = self.next()
        if tok.kind != "ident" or tok.upper in _KEYWORDS:
            raise self.fail(tok, f"unexpected token: {tok.text!r}")
        return tok.text

    def aggregate(self) -> Aggregate:
        func = self.next().upper
        self.expect("(")
        name = self.ident()
        self.expect(")")
        return Aggregate(func, name)

    def is_aggregate(self) -> bool:
        tok, nxt = self.peek(), self.peek(1)
        return tok is not None and tok.upper in _AGGREGATES and nxt is not None and nxt.text == "("

    def field_item(self, query_aggregates: list[Aggregate]) -> str:
        """A field name, ``FIELDS(ALL|CUSTOM|STANDARD)`` kept as written upper-cased (bind
        expands it), or an aggregate function with its optional alias (kept in
        ``query_aggregates``; its place in the list is "AGG:<n>")."""
        if self.is_aggregate():
            agg = self.aggregate()
            tok = self.peek()
            if tok is not None and tok.kind == "ident" and tok.upper not in _KEYWORDS:
                agg = Aggregate(agg.func, agg.field, self.ident())
            query_aggregates.append(agg)
            return f"AGG:{len(query_aggregates) - 1}"
        tok, nxt = self.peek(), self.peek(1)
        if tok is not None and tok.upper == "FIELDS" and nxt is not None and nxt.text == "(":
            self.i += 2
            group = self.next()
            if group.upper not in _FIELD_GROUPS:
                raise self.fail(group, f"unexpected token: {group.text!r}, expected ALL, CUSTOM or STANDARD")
            self.expect(")")
            return f"FIELDS({group.upper})"
        return self.ident()

    def field_alias(self, fields: list[str], aliases: dict[int, str]) -> None:
        """An alias after a plain field (``SELECT Status s``): Using Aliases with GROUP BY
        allows one on any field of an aggregate query; ``bind`` refuses it elsewhere."""
        tok = self.peek()
        if (not fields[-1].startswith(("AGG:", "FIELDS(")) and tok is not None and tok.kind == "ident"
                and tok.upper not in _KEYWORDS and "." not in tok.text):
            aliases[len(fields) - 1] = self.ident()

    def parse(self) -> Query:
        query = self.select_from()
        self.clauses(query)
        tok = self.peek()
        if tok is not None:
            raise self.fail(tok, f"unexpected token: {tok.text!r}")
        return query

    def select_from(self) -> Query:
        """SELECT ... FROM object [alias]."""
        self.expect("SELECT")
        fields: list[str] = []
        aggregates: list[Aggregate] = []
        aliases: dict[int, str] = {}
        count = False
        tok = self.peek()
        if (tok is not None and tok.upper == "COUNT" and (nxt := self.peek(1)) is not None and nxt.text == "("
                and (end := self.peek(2)) is not None and end.text == ")"):
            self.i += 3
            count = True
        else:
            fields.append(self.field_item(aggregates))
            self.field_alias(fields, aliases)
            while self.accept(","):
                fields.append(self.field_item(aggregates))
                self.field_alias(fields, aliases)
        self.expect("FROM")
        query = Query(sobject=self.ident(), fields=fields, count=count, aggregates=aggregates, field_aliases=aliases)
        tok = self.peek()
        if tok is not None and tok.kind == "ident" and tok.upper not in _KEYWORDS and "." not in tok.text:
            query.alias = self.ident()  # Alias Notation: FROM Contact c
        return query

    def clauses(self, query: Query) -> None:
        """USING SCOPE, WHERE, WITH, GROUP BY, ORDER BY, LIMIT, OFFSET, FOR and UPDATE, each
        optional, in that order. USING SCOPE, WITH SECURITY_ENFORCED / USER_MODE /
        SYSTEM_MODE, FOR VIEW / REFERENCE and UPDATE TRACKING / VIEWSTAT change nothing here:
        the integration user sees every record and field, and views are not tracked."""
        if self.accept("USING"):
            self.expect("SCOPE")
            self.word(_SCOPES)
        if self.accept("WHERE"):
            query.where = self.condition()
        if self.accept("WITH"):
            self.word(("SECURITY_ENFORCED", "USER_MODE", "SYSTEM_MODE"))
        self.ordering(query)
        if self.accept("FOR"):
            self.word(("VIEW", "REFERENCE"))
        if self.accept("UPDATE"):
            self.word(("TRACKING", "VIEWSTAT"))

    def word(self, allowed: Sequence[str]) -> str:
        tok = self.next()
        if tok.upper not in allowed:
            raise self.fail(tok, f"unexpected token: {tok.text!r}, expected one of {', '.join(allowed)}")
        return tok.upper

    def ordering(self, query: Query) -> None:
        """GROUP BY [HAVING], ORDER BY, LIMIT and OFFSET."""
        if self.accept("GROUP"):
            self.expect("BY")
            query.group_by.append(self.ident())
            while self.accept(","):
                query.group_by.append(self.ident())
            if self.accept("HAVING"):
                query.having = self.condition()
        if self.accept("ORDER"):
            self.expect("BY")
            query.order_by.append(self.order_item())
            while self.accept(","):
                query.order_by.append(self.order_item())
        if self.accept("LIMIT"):
            query.limit = self.integer("LIMIT")
        if self.accept("OFFSET"):
            query.offset = self.integer("OFFSET")
            if query.offset > 2000:
                raise SoqlError("NUMBER_OUTSIDE_VALID_RANGE", "Maximum SOQL offset allowed is 2000")

    def integer(self, what: str) -> int:
        tok = self.next()
        if tok.kind != "number" or "." in tok.text or tok.text.startswith("-"):
            raise self.fail(tok, f"{what} must be a non-negative integer, got {tok.text!r}")
        return int(tok.text)

    def order_item(self) -> OrderItem:
        agg = self.aggregate() if self.is_aggregate() else None
        name = f"{agg.func}({agg.field})" if agg is not None else self.ident()
        desc = False
        if self.accept("DESC"):
            desc = True
        else:
            self.accept("ASC")
        nulls_first = None
        if self.accept("NULLS"):
            if self.accept("FIRST"):
                nulls_first = True
            else:
                self.expect("LAST")
                nulls_first = False
        return OrderItem(name, desc, nulls_first, agg)

    # condition := term ((AND term)* | (OR term)*)   -- no mixing without parentheses
    def condition(self) -> Any:
        first = self.term()
        tok = self.peek()
        if tok is None or tok.upper not in ("AND", "OR"):
            return first
        op = tok.upper
        parts = [first]
        while self.accept(op):
            parts.append(self.term())
        tok = self.peek()
        if tok is not None and tok.upper in ("AND", "OR"):
            raise self.fail(tok, f"unexpected token: {tok.text!r} (use parentheses to mix AND and OR)")
        return BoolOp(op, tuple(parts))

    def term(self) -> Any:
        if self.accept("NOT"):
            return Not(self.term())
        if self.accept("("):
            inner = self.condition()
            self.expect(")")
            return inner
        if self.is_aggregate():  # HAVING: an aggregate compared with a literal
            agg = self.aggregate()
            tok = self.next()
            if tok.kind != "op":
                raise self.fail(tok, f"unexpected token: {tok.text!r}")
            op = "!=" if tok.text == "<>" else tok.text
            return Compare(f"{agg.func}({agg.field})", op, self.literal(), agg)
        name = self.ident()
        if self.accept("NOT"):
            self.expect("IN")
            return self.in_list(name, True)
        if self.accept("IN"):
            return self.in_list(name, False)
        if self.accept("LIKE"):
            tok = self.next()
            if tok.kind != "string":
                raise self.fail(tok, "LIKE needs a string pattern")
            _like_regex(tok.text[1:-1])  # reject bad escapes while parsing
            return Like(name, tok.text[1:-1])  # raw: \% and \_ mean something only here
        tok = self.next()
        if tok.kind != "op":
            raise self.fail(tok, f"unexpected token: {tok.text!r}")
        op = "!=" if tok.text == "<>" else tok.text
        return Compare(name, op, self.literal())

    def in_list(self, name: str, negate: bool) -> InList:
        tok, nxt = self.peek(), self.peek(1)
        if tok is not None and tok.text == "(" and nxt is not None and nxt.upper == "SELECT":
            self.i += 1
            sub = self.select_from()  # Semi-Joins with IN, Anti-Joins with NOT IN: WHERE only
            if self.accept("WHERE"):
                sub.where = self.condition()
            self.expect(")")
            return InList(name, (), negate, sub)
        return InList(name, self.value_list(), negate)

    def value_list(self) -> tuple[Literal, ...]:
        self.expect("(")
        values = [self.literal()]
        while self.accept(","):
            values.append(self.literal())
        self.expect(")")
        return tuple(values)

    def literal(self) -> Literal:
        tok = self.next()
        if tok.kind == "string":
            return Literal("string", _unescape(tok.text[1:-1]))
        if tok.kind == "number":
            return Literal("number", Decimal(tok.text))
        if tok.kind == "date":
            try:
                return Literal("date", date.fromisoformat(tok.text).isoformat())
            except ValueError:
                raise self.fail(tok, f"invalid date: {tok.text}") from None
        if tok.kind == "datetime":
            try:
                return Literal("datetime", canonical_stamp(tok.text))
            except ValueError:
                raise self.fail(tok, f"invalid datetime: {tok.text}") from None
        if tok.kind == "ident":
            word = tok.upper
            if word == "NULL":
                return Literal("null", None)
            if word in ("TRUE", "FALSE"):
                return Literal("bool", word == "TRUE")
            if word in _DATE_LITERALS:
                try:
                    return Literal("daterange", self.date_range(word))
                except (OverflowError, ValueError):  # LAST_N_DAYS:99999999 reaches past year 1 or 9999
                    raise self.fail(tok, f"{word}: the range of dates is out of bounds") from None
        raise self.fail(tok, f"unexpected token: {tok.text!r}")

    def date_range(self, word: str) -> tuple[date, date]:
        """A date literal's days, [start, end): Date Formats and Date Literals in WHERE."""
        today = self.today or datetime.now(UTC).date()
        kind, unit, n = _DATE_LITERALS[word]
        if kind in ("LAST_N", "NEXT_N", "N_AGO") and not n:
            self.expect(":")
            n = self.integer(word)
        this = _period_start(unit, today)
        if kind == "THIS":
            return this, _shift(this, unit, 1)
        if kind == "LAST":
            return _shift(this, unit, -1), this
        if kind == "NEXT":
            return _shift(this, unit, 1), _shift(this, unit, 2)
        if kind == "NEXT_N":
            return _shift(this, unit, 1), _shift(this, unit, n + 1)
        if kind == "LAST_N":
            # LAST_N_DAYS:n (and LAST_90_DAYS) count today too; the other units end before the current one.
            return (_shift(this, unit, -n), _shift(this, unit, 1)) if unit == "DAY" else (_shift(this, unit, -n), this)
        return _shift(this, unit, -n), _shift(this, unit, -n + 1)  # N_AGO


def _date_literals() -> dict[str, tuple[str, str, int]]:
    """Every calendar date literal -> (kind, unit, n: 0 when it takes ``:n``). The fiscal
    ones are the calendar's: an org's fiscal year starts in January unless its admin changed
    it, and this org's never is."""
    table = {"YESTERDAY": ("LAST", "DAY", 0), "TODAY": ("THIS", "DAY", 0), "TOMORROW": ("NEXT", "DAY", 0),
             "LAST_90_DAYS": ("LAST_N", "DAY", 90), "NEXT_90_DAYS": ("NEXT_N", "DAY", 90)}
    for unit in ("DAY", "WEEK", "MONTH", "QUARTER", "YEAR"):
        for prefix in ("", "FISCAL_") if unit in ("QUARTER", "YEAR") else ("",):
            name = prefix + unit
            if unit != "DAY":
                table.update({f"THIS_{name}": ("THIS", unit, 0), f"LAST_{name}": ("LAST", unit, 0),
                              f"NEXT_{name}": ("NEXT", unit, 0)})
            table.update({f"LAST_N_{name}S": ("LAST_N", unit, 0), f"NEXT_N_{name}S": ("NEXT_N", unit, 0),
                          f"N_{name}S_AGO": ("N_AGO", unit, 0)})
    return table


_DATE_LITERALS = _date_literals()
_FIELD_GROUPS = ("ALL", "CUSTOM", "STANDARD")
_SCOPES = ("DELEGATED", "EVERYTHING", "MINE", "MINE_AND_MY_GROUPS", "MY_TERRITORY", "MY_TEAM_TERRITORY", "TEAM")
_AGGREGATES = ("COUNT", "COUNT_DISTINCT", "SUM", "AVG", "MIN", "MAX")
FIELDS_SINCE = 51.0  # the FIELDS() function appeared in API 51.0
FIELDS_MAX_LIMIT = 200  # FIELDS(ALL) and FIELDS(CUSTOM) need a LIMIT of at most 200


def _period_start(unit: str, today: date) -> date:
    """The first day of the day, week (Sunday, the en_US user's first day), month, quarter or
    year holding ``today``."""
    if unit == "DAY":
        return today
    if unit == "WEEK":
        return today - timedelta(days=(today.weekday() + 1) % 7)
    if unit == "MONTH":
        return today.replace(day=1)
    if unit == "QUARTER":
        return date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return date(today.year, 1, 1)


def _shift(start: date, unit: str, n: int) -> date:
    """The period ``n`` units after (before, if negative) the one starting at ``start``."""
    if unit in ("DAY", "WEEK"):
        return start + timedelta(days=n * (7 if unit == "WEEK" else 1))
    months = n * {"MONTH": 1, "QUARTER": 3, "YEAR": 12}[unit]
    index = start.year * 12 + start.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


# SOQL's quoted-string escapes; any other backslash sequence is an error. \% and \_ are
# valid in LIKE patterns only (see _like_regex).
_ESCAPES = {"n": "\n", "N": "\n", "r": "\r", "R": "\r", "t": "\t", "T": "\t", "b": "\b", "B": "\b",
            "f": "\f", "F": "\f", "'": "'", '"': '"', "\\": "\\"}
_ESCAPE = re.compile(r"\\(u[0-9A-Fa-f]{4}|.)", re.DOTALL)


def _escaped(body: str, m: re.Match[str], like: bool) -> str:
    seq = m.group(1)
    if len(seq) == 5:
        return chr(int(seq[1:], 16))
    if seq in _ESCAPES:
        return _ESCAPES[seq]
    if like and seq in "%_":
        return seq
    raise SoqlError("MALFORMED_QUERY", f"Invalid string literal '{body}'. Illegal character sequence "
                    f"'\\{seq}' in string literal.")


def _unescape(body: str) -> str:
    return _ESCAPE.sub(lambda m: _escaped(body, m, like=False), body)


def parse(soql: str, today: date | None = None) -> Query:
    return _Parser(soql, today).parse()


# ---------------------------------------------------------------- binding and compiling


_STRINGISH = {"string", "textarea", "email", "picklist"}
_NUMERIC = {"int", "double", "currency", "percent"}


@dataclass
class BoundQuery:
    """A query checked against the schema: canonical field names, compiled predicate."""

    spec: ObjectSpec
    fields: list[str]
    count: bool
    predicate: Predicate | None
    order_by: list[tuple[FieldSpec, OrderItem]]
    limit: int | None
    offset: int
    stamp_range: tuple[str | None, bool, str | None, bool]  # (low, low_inclusive, high, high_inclusive)
    mentions_is_deleted: bool
    # Selected fields through parent relationships ("PartnerOrder.Name"): their hops and the
    # parent's field; order_getters: ORDER BY's value getters (paths followed).
    paths: dict[str, tuple[tuple[Hop, ...], str]] = field(default_factory=dict)
    order_getters: list[Callable[[Row], Any]] = field(default_factory=list)
    lookup: Lookup | None = None
    aggregate: AggregatePlan | None = None  # GROUP BY / aggregate functions: the rows become groups

    def shape(self, row: Row, api_version: str) -> dict[str, Any]:
        """A record with its parents nested, as a query answers one selecting relationship
        fields: ``"PartnerOrder": {"attributes": ..., "Name": ...}`` or null."""
        tree: list[Any] = []
        for name in self.fields:
            hops, leaf = self.paths.get(name, ((), name))
            _plant(tree, hops, leaf)
        return _shaped(row, self.spec.name, tree, api_version, self.lookup)

    def value(self, row: Row, name: str) -> Any:
        """A selected field's value, a relationship's followed (None past a missing parent)."""
        hops, leaf = self.paths.get(name, ((), name))
        target = _follow(row, hops, self.lookup)
        return None if target is None else target.get(leaf)


@dataclass(frozen=True)
class Hop:
    """One step up a parent relationship: the reference field, its object, the relationship."""

    fk: str
    target: str
    relationship: str


Lookup = Callable[[str, str], "Row | None"]  # (object, id) -> the live record or None
Select = Callable[["BoundQuery"], list[Row]]  # a bound query's live rows (a semi-join's subquery)


def _follow(row: Row | None, hops: Sequence[Hop], lookup: Lookup | None) -> Row | None:
    for hop in hops:
        if row is None or lookup is None or not row.get(hop.fk):
            return None
        row = lookup(hop.target, row[hop.fk])
    return row


def _plant(tree: list[Any], hops: Sequence[Hop], leaf: str) -> None:
    if not hops:
        tree.append(leaf)
        return
    for node in tree:
        if isinstance(node, tuple) and node[0] == hops[0]:
            _plant(node[1], hops[1:], leaf)
            return
    sub: list[Any] = []
    tree.append((hops[0], sub))
    _plant(sub, hops[1:], leaf)


def _shaped(row: Row, sobject: str, tree: list[Any], version: str, lookup: Lookup | None) -> dict[str, Any]:
    out: dict[str, Any] = {"attributes": {"type": sobject, "url": f"/services/data/v{version}/sobjects/{sobject}/"
                                                                 f"{row['Id']}"}}
    for node in tree:
        if isinstance(node, str):
            out[node] = row.get(node)
            continue
        hop, sub = node
        parent = _follow(row, (hop,), lookup)
        out[hop.relationship] = None if parent is None else _shaped(parent, hop.target, sub, version, lookup)
    return out


def _unknown_relationship(name: str) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        f"Didn't understand relationship '{name}' in field path. If you are attempting to use a "
        f"custom relationship, be sure to append the '__r' after the custom relationship name.",
    )


class _Resolver:
    """Field names of one query bound to the schema: canonical names, the FROM alias
    dropped, parent relationship paths (``PartnerOrder.Name``) followed to their object."""

    def __init__(self, spec: ObjectSpec, schema: OrgSchema | None, soql: str, alias: str | None,
                 api_version: str | None):
        self.spec, self.schema, self.soql, self.alias, self.version = spec, schema, soql, alias, api_version

    def __call__(self, name: str) -> tuple[tuple[Hop, ...], FieldSpec]:
        parts = name.split(".")
        if len(parts) > 1 and self.alias is not None and parts[0].lower() == self.alias.lower():
            parts = parts[1:]
        spec, hops = self.spec, []
        for rel in parts[:-1]:
            ref = next((f for f in spec.fields.values() if f.relationship_name is not None
                        and f.relationship_name.lower() == rel.lower() and len(f.reference_to) == 1), None)
            target = (self.schema.get(ref.reference_to[0], self.version)
                      if ref is not None and self.schema is not None else None)
            if ref is None or target is None:
                raise _unknown_relationship(rel)
            hops.append(Hop(ref.name, target.name, ref.relationship_name or rel))
            spec = target
        return tuple(hops), _field(spec, parts[-1], self.soql)

    def canonical(self, name: str) -> str:
        hops, f = self(name)
        return ".".join([h.relationship for h in hops] + [f.name])


def _field(spec: ObjectSpec, name: str, soql: str) -> FieldSpec:
    if "." in name:
        raise _unknown_relationship(name.split(".")[0])
    f = spec.field(name)
    if f is None:
        col = soql.find(name) + 1
        raise SoqlError(
            "INVALID_FIELD",
            f"\n{soql}\nERROR at Row:1:Column:{col}\nNo such column '{name}' on entity '{spec.name}'. If you are "
            f"attempting to use a custom field, be sure to append the '__c' after the custom field name. Please "
            f"reference your WSDL or the describe call for the appropriate names.",
        )
    return f


def _type_error(f: FieldSpec, expected: str) -> SoqlError:
    return SoqlError(
        "INVALID_FIELD",
        f"value of filter criterion for field '{f.name}' must be of type {expected} and should "
        f"{'' if expected in ('string', 'id') else 'not '}be enclosed in quotes",
    )


def _coerce(f: FieldSpec, lit: Literal) -> Any:
    """Literal -> the comparable form stored in rows for this field's type."""
    if lit.kind == "null":
        return None
    t = f.type
    if t in ("id", "reference"):
        return _coerce_id(f, lit)
    if t in ("date", "datetime"):
        return _coerce_day(f, lit)
    expected = _scalar_literal(t)
    if expected is None:
        raise _type_error(f, t)
    kind, named = expected
    if lit.kind != kind:
        raise _type_error(f, named)
    return lit.value.lower() if kind == "string" else lit.value


def _scalar_literal(t: str) -> tuple[str, str] | None:
    """(the literal kind a field of type ``t`` takes, the type SOQL names in its error)."""
    if t in _STRINGISH:
        return "string", "string"
    if t in _NUMERIC:
        return "number", "double" if t == "int" else t
    if t == "boolean":
        return "bool", "boolean"
    return None


def _coerce_id(f: FieldSpec, lit: Literal) -> str:
    if lit.kind != "string":
        raise _type_error(f, "id")
    try:
        return to_18(lit.value)
    except ValueError:
        raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid ID field: {lit.value}") from None


def _coerce_day(f: FieldSpec, lit: Literal) -> Any:
    """A date or datetime field: its literal, or a date range (``LAST_N_DAYS:…``) as bounds."""
    if f.type == "date":
        if lit.kind == "daterange":
            return (lit.value[0].isoformat(), lit.value[1].isoformat())
        if lit.kind != "date":
            raise _type_error(f, "date")
        return lit.value
    if lit.kind == "daterange":
        start, end = lit.value
        return (_midnight(start), _midnight(end))
    if lit.kind != "datetime":
        raise _type_error(f, "dateTime")
    return lit.value


def _midnight(d: date) -> str:
    return format_stamp(datetime(d.year, d.month, d.day, tzinfo=UTC))


def _getter(f: FieldSpec, hops: Sequence[Hop] = (), lookup: Lookup | None = None) -> Callable[[Row], Any]:
    """Row -> the field's comparable value (text lower-cased, numbers as Decimal), through
    ``hops`` to a parent record when the field is one of a parent's."""
    base = _value_getter(f)
    if not hops:
        return base

    def through(row: Row) -> Any:
        parent = _follow(row, hops, lookup)
        return None if parent is None else base(parent)
    return through


def _value_getter(f: FieldSpec) -> Callable[[Row], Any]:
    name = f.name
    if f.type in _STRINGISH:
        def get_lower(row: Row) -> Any:
            v = row.get(name)
            return v.lower() if isinstance(v, str) else v
        return get_lower
    if f.type in _NUMERIC:
        def get_num(row: Row) -> Any:
            v = row.get(name)
            if v is None or isinstance(v, Decimal):
                return v
            try:
                return Decimal(str(v))
            except InvalidOperation:
                return None
        return get_num
    return lambda row: row.get(name)


def _compile_compare(f: FieldSpec, op: str, lit: Literal, get: Callable[[Row], Any]) -> Predicate:
    value = _coerce(f, lit)
    if isinstance(value, tuple):  # date keyword range [start, end)
        start, end = value
        ranges: dict[str, Predicate] = {
            "=": lambda r: (v := get(r)) is not None and start <= v < end,
            "!=": lambda r: (v := get(r)) is None or not (start <= v < end),
            "<": lambda r: (v := get(r)) is not None and v < start,
            "<=": lambda r: (v := get(r)) is not None and v < end,
            ">": lambda r: (v := get(r)) is not None and v >= end,
            ">=": lambda r: (v := get(r)) is not None and v >= start,
        }
        return ranges[op]
    if value is None:
        if op == "=":
            return lambda r: get(r) is None
        if op == "!=":
            return lambda r: get(r) is not None
        raise SoqlError("MALFORMED_QUERY", f"invalid operator {op} with null")
    if f.type == "boolean" and op not in ("=", "!="):
        raise SoqlError("INVALID_QUERY_FILTER_OPERATOR", f"invalid operator on boolean field {f.name}")
    ops: dict[str, Predicate] = {
        "=": lambda r: get(r) == value,
        "!=": lambda r: get(r) != value,
        "<": lambda r: (v := get(r)) is not None and v < value,
        "<=": lambda r: (v := get(r)) is not None and v <= value,
        ">": lambda r: (v := get(r)) is not None and v > value,
        ">=": lambda r: (v := get(r)) is not None and v >= value,
    }
    return ops[op]


def _like_regex(pattern: str) -> re.Pattern[str]:
    r"""A LIKE pattern (the raw quoted body) as a case-insensitive regex: % any run, _ one
    character, escapes as in other strings plus \% and \_ for the literal characters."""
    pieces: list[list[str]] = [[]]  # the fixed parts between two %

    def plain(text: str) -> None:
        for ch in text:
            if ch == "%":
                pieces.append([])
            else:
                pieces[-1].append("." if ch == "_" else re.escape(ch))

    pos = 0
    for m in _ESCAPE.finditer(pattern):
        plain(pattern[pos:m.start()])
        pieces[-1].append(re.escape(_escaped(pattern, m, like=True)))
        pos = m.end()
    plain(pattern[pos:])
    # Each middle part at its first occurrence (an atomic group: for fixed parts the first
    # is never worse), so only the last % backtracks: '%a%a%a%a%a%b' against a long field
    # of a's is linear, not minutes of backtracking.
    texts = ["".join(p) for p in pieces]
    body = texts[0]
    if len(texts) > 1:
        body += "".join(f"(?>.*?{t})" for t in texts[1:-1]) + ".*" + texts[-1]
    return re.compile("^" + body + "$", re.IGNORECASE | re.DOTALL)


class _Compiler:
    def __init__(self, resolve: _Resolver, lookup: Lookup | None, select: Select | None = None):
        self.resolve = resolve
        self.lookup = lookup
        self.select = select
        self.mentions_is_deleted = False

    def joined(self, f: FieldSpec, sub: Query) -> set[Any]:
        """A semi- or anti-join's ids: its subquery's one id field, run now (no rows without
        a ``select``)."""
        if f.type not in ("id", "reference") or sub.aggregates or sub.group_by or sub.count or len(sub.fields) != 1:
            raise SoqlError("MALFORMED_QUERY", f"a semi-join or anti-join selects one ID or reference field, "
                                               f"compared with an ID or reference field ({f.name})")
        r = self.resolve
        bound = bind(sub, r.schema, r.soql, r.version, lookup=self.lookup, select=self.select)  # type: ignore[arg-type]
        leaf = bound.spec.field(bound.fields[0].rsplit(".", 1)[-1])
        if "." in bound.fields[0] or leaf is None or leaf.type not in ("id", "reference"):
            raise SoqlError("MALFORMED_QUERY", "a semi-join or anti-join subquery selects one ID or reference field")
        rows = self.select(bound) if self.select is not None else []
        return {row[leaf.name] for row in rows if row.get(leaf.name) is not None}

    def compile(self, node: Any) -> Predicate:
        if isinstance(node, BoolOp):
            parts = [self.compile(p) for p in node.parts]
            if node.op == "AND":
                return lambda r: all(p(r) for p in parts)
            return lambda r: any(p(r) for p in parts)
        if isinstance(node, Not):
            inner = self.compile(node.part)
            return lambda r: not inner(r)
        if isinstance(node, Compare) and node.aggregate is not None:
            raise SoqlError("MALFORMED_QUERY", f"An aggregate ({node.field}) can't filter rows in WHERE; use HAVING")
        hops, f = self.resolve(node.field)
        if f.name == "IsDeleted" and not hops:
            self.mentions_is_deleted = True
        get = _getter(f, hops, self.lookup)
        if isinstance(node, Compare):
            return _compile_compare(f, node.op, node.value, get)
        if isinstance(node, InList):
            values = (self.joined(f, node.subquery) if node.subquery is not None
                      else {_coerce(f, v) for v in node.values})
            if node.negate:
                return lambda r: get(r) not in values
            return lambda r: get(r) in values
        if isinstance(node, Like):
            if f.type not in _STRINGISH | {"id", "reference"}:
                raise SoqlError("INVALID_FIELD", f"invalid operator on field {f.name}: LIKE needs a text field")
            rx = _like_regex(node.pattern)
            return lambda r: isinstance(v := get(r), str) and rx.match(v) is not None
        raise SoqlError("MALFORMED_QUERY", "unsupported condition")


def _stamp_range(node: Any) -> tuple[str | None, bool, str | None, bool]:
    """Bounds on SystemModstamp implied by top-level AND terms, for an index range scan."""
    low: str | None = None
    low_inc = True
    high: str | None = None
    high_inc = True
    terms = node.parts if isinstance(node, BoolOp) and node.op == "AND" else ((node,) if node is not None else ())
    for t in terms:
        if not (isinstance(t, Compare) and t.field.lower() == "systemmodstamp" and t.value.kind == "datetime"):
            continue
        v = t.value.value
        if t.op in (">", ">=", "=") and (low is None or v > low or (v == low and t.op == ">")):
            low, low_inc = v, t.op != ">"
        if t.op in ("<", "<=", "=") and (high is None or v < high or (v == high and t.op == "<")):
            high, high_inc = v, t.op != "<"
    return low, low_inc, high, high_inc


def _covered_by_range(node: Any) -> bool:
    terms = node.parts if isinstance(node, BoolOp) and node.op == "AND" else ((node,) if node is not None else ())
    return bool(terms) and all(
        isinstance(t, Compare) and t.field.lower() == "systemmodstamp" and t.value.kind == "datetime"
        and t.op in (">", ">=", "<", "<=", "=") for t in terms
    )


def _expand(spec: ObjectSpec, name: str, query: Query, soql: str, api_version: str | None,
            resolve: _Resolver) -> list[str]:
    """A selected name as the fields it stands for: itself (canonical; a relationship path
    as ``Relationship.Field``), or a FIELDS() group's fields in describe order (custom:
    named ``__c``, as describe's ``custom`` says)."""
    if not name.startswith("FIELDS("):
        return [resolve.canonical(name)]
    if api_version is not None and float(api_version) < FIELDS_SINCE:
        raise SoqlError("MALFORMED_QUERY", located(soql, soql.upper().find("FIELDS"), "unexpected token: '('"))
    group = name[7:-1]
    if group != "STANDARD" and (query.limit is None or query.limit > FIELDS_MAX_LIMIT):
        raise SoqlError("MALFORMED_QUERY", f"The SOQL FIELDS function must have a LIMIT of at most "
                                           f"{FIELDS_MAX_LIMIT}")
    return [f.name for f in spec.fields.values()
            if group == "ALL" or (f.name.endswith("__c") == (group == "CUSTOM"))]


_NUMERIC_AGGREGATES = ("SUM", "AVG")


@dataclass
class _Column:
    key: str  # the record's key: the field's name, the alias, or exprN
    raw: Callable[[Row], Any]  # a row's value as stored
    comparable: Callable[[Row], Any]  # as compared and grouped (text lower-cased)
    func: str | None = None  # the aggregate, None for a grouped field


@dataclass
class AggregatePlan:
    """SELECT with aggregate functions and GROUP BY: one AggregateResult record per group
    (a single one without GROUP BY), ordered, then LIMIT and OFFSET applied to the groups."""

    group: list[_Column]
    columns: list[_Column]  # what each record shows, in SELECT order
    order: list[tuple[_Column, OrderItem]]
    limit: int | None
    offset: int
    having: Predicate | None = None  # over a group: {"__members": its rows}

    def run(self, rows: list[Row]) -> list[dict[str, Any]]:
        groups: dict[tuple[Any, ...], list[Row]] = {}
        for row in rows:
            groups.setdefault(tuple(c.comparable(row) for c in self.group), []).append(row)
        if not self.group:
            groups = {(): rows}
        if self.having is not None:
            having = self.having
            groups = {k: members for k, members in groups.items() if having({"__members": members})}
        # Without ORDER BY the groups come in their grouped fields' order, ascending.
        order = self.order or [(c, OrderItem(c.key)) for c in self.group]
        kind = {"attributes": {"type": "AggregateResult"}}
        results = [({**kind, **{c.key: _aggregate(c, members) for c in self.columns}},
                    [_aggregate(c, members, comparable=True) for c, _ in order])
                   for members in groups.values()]
        for i, (_, item) in reversed(list(enumerate(order))):
            null_low = item.effective_nulls_first != item.desc

            def key(entry: tuple[dict[str, Any], list[Any]], i: int = i, null_low: bool = null_low) -> tuple[int, Any]:
                v = entry[1][i]
                return (0 if null_low else 2, 0) if v is None else (1, v)
            results.sort(key=key, reverse=item.desc)
        records = [record for record, _ in results][self.offset:]
        return records if self.limit is None else records[:self.limit]


def _aggregate(column: _Column, rows: list[Row], *, comparable: bool = False) -> Any:
    get = column.comparable if comparable else column.raw
    if column.func is None:
        return get(rows[0]) if rows else None
    if column.func == "COUNT":
        return sum(1 for r in rows if column.raw(r) is not None)
    if column.func == "COUNT_DISTINCT":
        return len({column.comparable(r) for r in rows if column.raw(r) is not None})
    values = [v for v in (column.comparable(r) for r in rows) if v is not None]
    if not values:
        return None
    if column.func == "SUM":
        return sum(values, Decimal(0))
    if column.func == "AVG":
        return sum(values, Decimal(0)) / len(values)
    pick = min(values) if column.func == "MIN" else max(values)
    if comparable:
        return pick
    return next(column.raw(r) for r in rows if column.comparable(r) == pick)


def _check_grouped(name: str, grouped: set[str], resolve: _Resolver) -> None:
    if name.startswith("FIELDS("):
        raise SoqlError("MALFORMED_QUERY", "FIELDS() can't be used in a query with aggregate functions")
    if resolve.canonical(name).lower() not in grouped:
        raise SoqlError("MALFORMED_QUERY", f"Field must be grouped or aggregated: {resolve(name)[1].name}")


def _plan(query: Query, resolve: _Resolver, lookup: Lookup | None) -> AggregatePlan:
    """The aggregate plan of a query with GROUP BY or aggregate functions; a selected field
    must be grouped, and SUM and AVG take numbers only (SOQL's Aggregate Functions)."""
    def column(name: str, key: str | None = None, func: str | None = None) -> _Column:
        hops, f = resolve(name)
        if func in _NUMERIC_AGGREGATES and f.type not in _NUMERIC:
            raise SoqlError("MALFORMED_QUERY", f"field {f.name} does not support aggregate operator {func}")
        parent = (lambda r: _follow(r, hops, lookup)) if hops else (lambda r: r)

        def raw(row: Row) -> Any:
            target = parent(row)
            return None if target is None else target.get(f.name)
        return _Column(key or f.name, raw, _getter(f, hops, lookup), func)

    if query.limit is not None and not query.group_by:
        # Considerations for GROUP BY: an aggregate query with a LIMIT needs a GROUP BY.
        raise SoqlError("MALFORMED_QUERY", "LIMIT in an aggregate query needs a GROUP BY clause")
    group = [column(name) for name in query.group_by]
    grouped = {resolve.canonical(name).lower() for name in query.group_by}
    columns: list[_Column] = []
    unnamed = 0
    for i, name in enumerate(query.fields):
        if not name.startswith("AGG:"):
            _check_grouped(name, grouped, resolve)
            columns.append(column(name, query.field_aliases.get(i)))
            continue
        agg = query.aggregates[int(name[4:])]
        key = agg.alias
        if key is None:
            key, unnamed = f"expr{unnamed}", unnamed + 1
        columns.append(column(agg.field, key, agg.func))
    order = []
    for item in query.order_by:
        if item.aggregate is not None:
            order.append((column(item.aggregate.field, item.field, item.aggregate.func), item))
        elif resolve.canonical(item.field).lower() in grouped:
            order.append((column(item.field), item))
        else:
            raise SoqlError("MALFORMED_QUERY", f"Ordered field must be grouped or aggregated: {item.field}")
    having = _having(query.having, grouped, column, resolve) if query.having is not None else None
    return AggregatePlan(group, columns, order, query.limit, query.offset, having)


def _having(node: Any, grouped: set[str], column: Callable[..., _Column], resolve: _Resolver) -> Predicate:
    """HAVING: a condition on each group, its terms an aggregate or a grouped field compared
    with a literal (SOQL: HAVING)."""
    if isinstance(node, BoolOp):
        parts = [_having(p, grouped, column, resolve) for p in node.parts]
        return (lambda g: all(p(g) for p in parts)) if node.op == "AND" else (lambda g: any(p(g) for p in parts))
    if isinstance(node, Not):
        inner = _having(node.part, grouped, column, resolve)
        return lambda g: not inner(g)
    if isinstance(node, Compare) and node.aggregate is not None:
        agg = node.aggregate
        col = column(agg.field, node.field, agg.func)
        f = resolve(agg.field)[1]
        if agg.func in ("COUNT", "COUNT_DISTINCT"):
            f = replace(f, name=node.field, type="int")
        return _compile_compare(f, node.op, node.value,
                                lambda g: _aggregate(col, g["__members"], comparable=True))
    if isinstance(node, Compare) and resolve.canonical(node.field).lower() in grouped:
        col = column(node.field)
        return _compile_compare(resolve(node.field)[1], node.op, node.value,
                                lambda g: col.comparable(g["__members"][0]) if g["__members"] else None)
    raise SoqlError("MALFORMED_QUERY", "HAVING takes aggregates and grouped fields compared with a value")


def bind(query: Query, schema: OrgSchema, soql: str, api_version: str | None = None, *,
         lookup: Lookup | None = None, select: Select | None = None) -> BoundQuery:
    spec = schema.get(query.sobject, api_version)
    if spec is None:
        raise SoqlError(
            "INVALID_TYPE",
            f"\n{soql}\nERROR at Row:1:Column:{soql.upper().find(' FROM ') + 7}\nsObject type '{query.sobject}' is "
            f"not supported. If you are attempting to use a custom object, be sure to append the '__c' after the "
            f"entity name. Please reference your WSDL or the describe call for the appropriate names.",
        )
    resolve = _Resolver(spec, schema, soql, query.alias, api_version)
    if query.aggregates or query.group_by:
        compiler = _Compiler(resolve, lookup, select)
        plan = _plan(query, resolve, lookup)
        predicate = compiler.compile(query.where) if query.where is not None else None
        # The rows: every match, unordered and unlimited; ORDER BY, LIMIT, OFFSET apply to the groups.
        return BoundQuery(spec=spec, fields=[c.key for c in plan.columns], count=False, predicate=predicate,
                          order_by=[], limit=None, offset=0, stamp_range=(None, True, None, True),
                          mentions_is_deleted=compiler.mentions_is_deleted, lookup=lookup, aggregate=plan)
    if query.field_aliases:
        raise SoqlError("MALFORMED_QUERY", "Only aggregate expressions use field aliasing")
    fields: list[str] = []
    paths: dict[str, tuple[tuple[Hop, ...], str]] = {}
    for name in query.fields:
        for canonical in _expand(spec, name, query, soql, api_version, resolve):
            if canonical in fields:
                raise SoqlError("MALFORMED_QUERY", f"duplicate field selected: {canonical}")
            fields.append(canonical)
            if "." in canonical:
                hops, leaf = resolve(canonical)
                paths[canonical] = (hops, leaf.name)
    compiler = _Compiler(resolve, lookup, select)
    predicate = compiler.compile(query.where) if query.where is not None else None
    if _covered_by_range(query.where):
        predicate = None  # the (SystemModstamp, Id) index range scan already applies it
    order_by, order_getters = [], []
    for item in query.order_by:
        hops, f = resolve(item.field)
        # A parent's field keeps its path as its name: never mistaken for the index order.
        order_by.append((replace(f, name=resolve.canonical(item.field)) if hops else f, item))
        order_getters.append(_getter(f, hops, lookup))
    return BoundQuery(
        spec=spec,
        fields=fields,
        count=query.count,
        predicate=predicate,
        order_by=order_by,
        limit=query.limit,
        offset=query.offset,
        stamp_range=_stamp_range(query.where),
        mentions_is_deleted=compiler.mentions_is_deleted,
        paths=paths,
        order_getters=order_getters,
        lookup=lookup,
    )


MAX_SOQL_CHARS = 100_000  # SOQL limits: a statement is at most 100,000 characters


def compile_soql(soql: str, schema: OrgSchema, api_version: str | None = None, *,
                 today: date | None = None, lookup: Lookup | None = None,
                 select: Select | None = None) -> BoundQuery:
    """``soql`` bound to the org's schema at ``api_version``; date keywords count from
    ``today`` (the org's clock: it may have been moved on); ``lookup`` finds the parent
    records of relationship paths (without it they are null), ``select`` runs a semi- or
    anti-join's subquery (without it, it has no rows)."""
    if len(soql) > MAX_SOQL_CHARS:
        raise SoqlError("MALFORMED_QUERY", f"SOQL statements cannot be longer than {MAX_SOQL_CHARS} characters "
                                           f"(this one has {len(soql)})")
    return bind(parse(soql, today), schema, soql, api_version, lookup=lookup, select=select)


def is_index_order(order_by: Sequence[tuple[FieldSpec, OrderItem]]) -> bool:
    """True when ORDER BY is satisfied by the (SystemModstamp, Id) index order."""
    names = [(f.name, item.desc) for f, item in order_by]
    return names in ([], [("SystemModstamp", False)], [("SystemModstamp", False), ("Id", False)])


def sort_rows(rows: list[Row], order_by: Sequence[tuple[FieldSpec, OrderItem]],
              getters: Sequence[Callable[[Row], Any]] | None = None) -> None:
    """Stable multi-key sort, last key first; nulls placed per NULLS FIRST/LAST. ``getters``:
    each key's value getter (a bound query's, which follow relationship paths)."""
    for i, (f, item) in reversed(list(enumerate(order_by))):
        get = getters[i] if getters else _getter(f)
        nulls_first = item.effective_nulls_first
        # With reverse=True the null rank flips too, so compute the rank for the final order.
        null_low = nulls_first != item.desc

        def key(row: Row, get: Callable[[Row], Any] = get, null_low: bool = null_low) -> tuple[int, Any]:
            v = get(row)
            if v is None:
                return (0 if null_low else 2, 0)
            return (1, v)

        rows.sort(key=key, reverse=item.desc)
