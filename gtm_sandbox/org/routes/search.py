"""``search`` (a SOSL statement) and ``parameterizedSearch`` (the same without SOSL), as
the REST API's Search for a String page has them: ``{"searchRecords": [records]}``.

The SOSL subset: ``FIND {terms}`` (or ``'terms'``), ``IN ALL|NAME|EMAIL|PHONE FIELDS``,
``RETURNING Object[(fields [WHERE ...] [ORDER BY ...] [LIMIT n])], ...`` (each object's
part run as SOQL by the org's one engine) and ``LIMIT n``. Terms are words, all of which a
record must hold in its searched text fields (or any of them, with ``OR``), ``*`` and ``?``
as wildcards, ``"a phrase"`` as one; matching ignores case. Without RETURNING every
searchable object answers with its Id. A malformed statement is a 400 MALFORMED_SEARCH.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from gtm_sandbox.org.data import ApiError, Row
from gtm_sandbox.org.jsonenc import Raw, record_encoder
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routing import RouteTable
from gtm_sandbox.org.soql import SoqlError, Token, compile_soql, tokenize

SEARCH_MAX = 2000  # SOSL: at most 2,000 records in all
_FIND = re.compile(r"^\s*FIND\s*(?:\{((?:[^}\\]|\\.)*)\}|'((?:[^'\\]|\\.)*)')", re.IGNORECASE | re.DOTALL)
_SCOPES = {"ALL": ("string", "textarea", "email", "phone", "url"), "NAME": (), "EMAIL": ("email",),
           "PHONE": ("phone",), "SIDEBAR": ("string", "textarea", "email", "phone", "url")}


def _malformed(message: str) -> ApiError:
    return ApiError(400, "MALFORMED_SEARCH", message)


def _matcher(terms: str) -> Callable[[list[str]], bool]:
    """The search terms as a test on a record's searched texts."""
    phrases = re.findall(r'"([^"]*)"|(\S+)', re.sub(r"\\(.)", r"\1", terms))
    words = [p or w for p, w in phrases]
    any_of = any(w.upper() == "OR" for w in words)
    words = [w for w in words if w.upper() not in ("AND", "OR")]
    if not words or any(len(w.replace("*", "").replace("?", "")) < 2 and " " not in w for w in words):
        raise _malformed("search term must be longer than one character")
    patterns = [re.compile(_term_pattern(w), re.IGNORECASE | re.DOTALL) for w in words]

    def test(texts: list[str]) -> bool:
        found = (any(p.search(t) for t in texts) for p in patterns)
        return any(found) if any_of else all(found)
    return test


def _term_pattern(term: str) -> str:
    """A search term as a regular expression: ``*`` any characters, ``?`` one. Each piece
    between two wildcards is taken at its first occurrence (an atomic group: for fixed
    pieces the first is never worse), so only the last ``*`` backtracks and a term of
    many wildcards stays linear in the text instead of backtracking for minutes."""
    pieces = ["".join("." if c == "?" else re.escape(c) for c in piece) for piece in term.split("*")]
    body = pieces[0]
    if len(pieces) > 1:
        body += "".join(f"(?>.*?{piece})" for piece in pieces[1:-1]) + ".*" + pieces[-1]
    return r"(?<!\w)" + body + r"(?!\w)"


class SearchRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, schema)."""

    def _search(self, req: Request, v: str) -> Response:
        sosl = req.param("q")
        if not sosl:
            raise _malformed("A search string has to be specified (q)")
        m = _FIND.match(sosl)
        if m is None:
            raise _malformed(f"unexpected token in search: {sosl.split()[0] if sosl.split() else sosl!r}")
        matches = _matcher(m.group(1) if m.group(1) is not None else m.group(2))
        rest = sosl[m.end():]
        scope, returning, limit = self._sosl_clauses(rest)
        return self._searched(v, matches, scope, returning, limit)

    def _sosl_clauses(self, rest: str) -> tuple[str, list[tuple[str, str]], int]:
        """IN … FIELDS, RETURNING's (object, inside of its parentheses) and LIMIT."""
        try:
            tokens = tokenize(rest)
        except SoqlError as err:
            raise _malformed(err.message) from None
        words = [t.upper for t in tokens] + ["", "", ""]
        i, scope, returning, limit = 0, "ALL", [], SEARCH_MAX
        if words[i] == "IN":
            if words[i + 1] not in _SCOPES or words[i + 2] != "FIELDS":
                raise _malformed("IN takes ALL, NAME, EMAIL, PHONE or SIDEBAR FIELDS")
            scope, i = words[i + 1], i + 3
        if words[i] == "RETURNING":
            returning, i = _returning(tokens, i + 1, rest)
        if words[i] == "LIMIT":
            if i + 1 >= len(tokens) or not tokens[i + 1].text.isdigit():
                raise _malformed("LIMIT needs a number")
            limit, i = min(int(tokens[i + 1].text), SEARCH_MAX), i + 2
        if i < len(tokens):
            raise _malformed(f"unexpected token: {tokens[i].text!r}")
        return scope, returning, limit

    def _searched(self, v: str, matches: Callable[[list[str]], bool], scope: str,
                  returning: list[tuple[str, str]], limit: int) -> Response:
        if not returning:
            returning = [(spec.name, "") for spec in self.data.schema.at(v) if spec.searchable]
        out: list[Raw] = []
        for obj, inside in returning:
            spec = self.data.schema.get(obj, v)
            if spec is None:
                raise ApiError(400, "INVALID_TYPE", f"sObject type '{obj}' is not supported.")
            soql = _soql(spec.name, inside)
            try:
                bound = compile_soql(soql, self.data.schema, v, today=self.data.clock.today(),
                                     lookup=self.data.lookup, select=self._live_rows)
            except SoqlError as err:
                raise _malformed(err.message.strip()) from None
            kinds = _SCOPES[scope]
            searched = [f.name for f in spec.fields.values() if f.type in kinds or f.name == "Name"]
            rows: list[Row] = [r for r in self.data.select(bound, include_deleted=False)
                               if matches([str(r[n]) for n in searched if r.get(n) is not None])]
            enc = record_encoder(spec.name, bound.fields, v)
            out.extend(Raw(enc(r)) for r in rows[:max(0, limit - len(out))])
        return Response.json(200, {"searchRecords": out})

    def _parameterized_search(self, req: Request, v: str) -> Response:
        """``parameterizedSearch?q=…&sobject=X&X.fields=a,b&X.limit=n&in=ALL&overallLimit=n``."""
        q = req.param("q")
        if not q:
            raise _malformed("A search string has to be specified (q)")
        matches = _matcher(q)
        scope = (req.param("in") or "ALL").upper()
        if scope not in _SCOPES:
            raise _malformed("in takes ALL, NAME, EMAIL, PHONE or SIDEBAR")
        returning = []
        for obj in req.query.get("sobject", []):
            inside = req.param(f"{obj}.fields") or ""
            if req.param(f"{obj}.limit"):
                inside += f" LIMIT {req.param(f'{obj}.limit')}"
            returning.append((obj, inside))
        overall = req.param("overallLimit") or str(SEARCH_MAX)
        if not overall.isdigit():
            raise _malformed("overallLimit must be a number")
        return self._searched(v, matches, scope, returning, min(int(overall), SEARCH_MAX))


def _returning(tokens: list[Token], i: int, rest: str) -> tuple[list[tuple[str, str]], int]:
    """RETURNING's objects from token ``i``, each with the text inside its parentheses."""
    returning = []
    while True:
        if i >= len(tokens) or tokens[i].kind != "ident":
            raise _malformed("RETURNING needs an object name")
        obj, i, inside = tokens[i].text, i + 1, ""
        if i < len(tokens) and tokens[i].text == "(":
            depth, start = 0, tokens[i].pos + 1
            while i < len(tokens):
                depth += {"(": 1, ")": -1}.get(tokens[i].text, 0)
                if depth == 0:
                    break
                i += 1
            if i >= len(tokens):
                raise _malformed("unbalanced parentheses in RETURNING")
            inside, i = rest[start:tokens[i].pos], i + 1
        returning.append((obj, inside))
        if i >= len(tokens) or tokens[i].text != ",":
            return returning, i
        i += 1


def _soql(obj: str, inside: str) -> str:
    """RETURNING Obj(fields WHERE … LIMIT n) as the SOQL the engine runs."""
    tokens = tokenize(inside) if inside.strip() else []
    clause = next((t.pos for t in tokens if t.upper in ("WHERE", "ORDER", "LIMIT", "OFFSET")), len(inside))
    fields = inside[:clause].strip() or "Id"
    return f"SELECT {fields} FROM {obj} {inside[clause:]}".strip()


def install(routes: RouteTable) -> None:
    routes.add("GET", "search", "search", SearchRoutes._search)
    routes.add("GET", "parameterizedSearch", "parameterized_search", SearchRoutes._parameterized_search)

