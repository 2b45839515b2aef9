"""``query``, ``queryAll`` and their query locators (``queryMore``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from gtm_sandbox.org.data import ApiError, Row
from gtm_sandbox.org.ids import make_id
from gtm_sandbox.org.jsonenc import encode, record_encoder
from gtm_sandbox.org.messages import Request, Response
from gtm_sandbox.org.routing import RouteTable
from gtm_sandbox.org.soql import BoundQuery, compile_soql

# API Query Cursor Limits: since API v56.0 (for every version) a user's open cursors are not
# capped and a locator with its results lives for 2 days after the query ran. The caps here
# only guard the sandbox's memory against abandoned queries, far beyond what a client opens:
# at most 1,000 locators holding at most 2,000,000 result rows together (20 full reads of a
# 100k-record bench org at once). Past either, the least recently used locator goes first,
# and a later use of it is the documented INVALID_QUERY_LOCATOR; a single query larger than
# the row budget still keeps its own locator.
LOCATOR_LIFETIME = timedelta(days=2)
MAX_OPEN_LOCATORS = 1000
LOCATOR_ROW_BUDGET = 2_000_000


@dataclass
class Locator:
    rows: list[Row]
    encode: Callable[[Row], str]
    resource: str  # query | queryAll
    total: int
    batch: int
    opened: datetime  # the org clock's moment when the query ran


class QueryRoutes:
    """Handlers mixed into ``OrgApi`` (``self`` is the API: data, sessions, controls)."""

    locator_row_budget: int = LOCATOR_ROW_BUDGET  # result rows all open locators may hold together

    def _batch_size(self, req: Request) -> int:
        size = self.batch_size
        options = req.headers.get("sforce-query-options", "")
        m = re.search(r"batchSize=(\d+)", options)
        if m:
            size = max(200, min(2000, int(m.group(1))))
            size = min(size, self.batch_size) if self.batch_size < 200 else size
        return size

    def _query(self, req: Request, v: str) -> Response:
        soql = req.param("q")
        if not soql:
            raise ApiError(400, "MALFORMED_QUERY", "A query string has to be specified")
        resource = req.path.rstrip("/").rsplit("/", 1)[1]
        return Response(200, self.run_query(soql, v, resource == "queryAll", self._batch_size(req)))

    def _live_rows(self, bound: BoundQuery) -> list[Row]:
        return self.data.select(bound, include_deleted=False)

    def run_query(self, soql: str, version: str, include_deleted: bool, batch: int) -> str:
        bound = compile_soql(soql, self.data.schema, version, today=self.data.clock.today(), lookup=self.data.lookup,
                             select=self._live_rows)
        if bound.count:
            n = len(self.data.select(bound, include_deleted=include_deleted))
            return encode({"totalSize": n, "done": True, "records": []})
        if bound.aggregate is not None:  # one AggregateResult record per group, in one page
            groups = bound.aggregate.run(self.data.select(bound, include_deleted=include_deleted))
            return encode({"totalSize": len(groups), "done": True, "records": groups})
        rows = self.data.select(bound, include_deleted=include_deleted)
        enc = record_encoder(bound.spec.name, bound.fields, version)
        if bound.paths:  # parents nested in each record: the general encoder, not the flat one
            enc = lambda row: encode(bound.shape(row, version))  # noqa: E731
        return self._page(rows, enc, 0, batch, version, "queryAll" if include_deleted else "query", None)

    def _page(self, rows: list[Row], enc: Callable[[Row], str], start: int, batch: int, version: str,
              resource: str, locator_id: str | None) -> str:
        end = min(start + batch, len(rows))
        done = end >= len(rows)
        head = f'{{"totalSize":{len(rows)},"done":{"true" if done else "false"}'
        if not done:
            if locator_id is None:
                locator_id = self._new_locator(Locator(rows, enc, resource, len(rows), batch,
                                                       self.data.clock.moment()))
            # Always under /query/, queryAll pages too (as Salesforce does); the locator itself
            # remembers that deleted rows are included, so /query/ and /queryAll/ both serve it.
            head += f',"nextRecordsUrl":"/services/data/v{version}/query/{locator_id}-{end}"'
        elif locator_id is not None:
            with self._locator_lock:
                self._locators.pop(locator_id, None)
        return head + ',"records":[' + ",".join(enc(r) for r in rows[start:end]) + "]}"

    def _new_locator(self, locator: Locator) -> str:
        with self._locator_lock:
            self._locator_seq += 1
            lid = make_id("01g", self._locator_seq, pod="RO")
            expired = [k for k, old in self._locators.items() if locator.opened - old.opened > LOCATOR_LIFETIME]
            for k in expired:
                del self._locators[k]
            self._locators[lid] = locator
            held = sum(len(open_.rows) for open_ in self._locators.values())
            while len(self._locators) > MAX_OPEN_LOCATORS or (held > self.locator_row_budget
                                                              and len(self._locators) > 1):
                _, dropped = self._locators.popitem(last=False)  # the least recently used goes
                held -= len(dropped.rows)
            return lid

    def _query_more(self, req: Request, v: str, token: str) -> Response:
        lid, _, pos = token.partition("-")
        with self._locator_lock:
            locator = self._locators.get(lid)
            if locator is not None and self.data.clock.moment() - locator.opened > LOCATOR_LIFETIME:
                del self._locators[lid]  # available for 2 days after the query ran
                locator = None
            if locator is not None:
                self._locators.move_to_end(lid)
        if locator is None or not pos.isdigit():
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        start = int(pos)
        if start >= locator.total:
            raise ApiError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        return Response(200, self._page(locator.rows, locator.encode, start, locator.batch, v, locator.resource, lid))


def install(routes: RouteTable) -> None:
    routes.add("GET", "query", "query", QueryRoutes._query)
    routes.add("GET", "queryAll", "queryAll", QueryRoutes._query)
    routes.add("GET", "query/{token}", "query_more", QueryRoutes._query_more)
    routes.add("GET", "queryAll/{token}", "query_more", QueryRoutes._query_more)
