"""The mirror's Bulk API 2.0 path: big reads go through a query job, small ones stay REST.

``BulkSource.pages(obj, soql, include_deleted)`` is what the mirror reads an object's
pages from when the path is on (``[sync] bulk_threshold`` > 0):

* **Selection, without an extra call**: the REST query starts as usual; its first page
  carries ``totalSize``, the number of records the query matches (all of them on an
  initial or ``--full`` sync, the window past the cursor otherwise). Below the threshold,
  or when that first page is the only one, the REST pages go on as today. At or above it
  the REST cursor is dropped (one API call spent) and the same SOQL (same fields,
  ``WHERE``, ``ORDER BY SystemModstamp, Id``) runs as a Bulk API 2.0 query job.
* **Same rows, same store path**: the job's CSV values are text; each record is given
  the shape a REST record has before the mirror's one conversion (``records.py``):
  empty values are null (Salesforce writes null as an empty value in Bulk CSV),
  booleans become ``True``/``False`` and datetimes the REST wire form; numbers, dates and
  ids stay text, which the same converters take (``Decimal("50.00")``, ``int``,
  ``date``). Then the pages go through the mirror's own page path: per-record validation
  and quarantine, ``upsert_many(..., checked=True)``, the cursor committed with the rows.
* **Resumable**: the job's rows come in ``SystemModstamp, Id`` order, and every page
  commits its rows and the cursor (its last stamp) together. A run that dies between
  pages (or a results read that fails for good) leaves the cursor at the last committed
  page; the next run queries ``SystemModstamp >= cursor - lookback`` (again through a
  job when that window is still big) and re-reads at most the overlap: upserts are
  idempotent, so nothing is written twice. An unfinished job is aborted on the way out.
* **A failed job** (``Failed``/``Aborted`` in the org, before any row was read) is
  logged and the object is read over REST in the same run.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import structlog

from connector.errors import BulkJobFailed
from connector.mappings import ObjectMapping


class Page(Protocol):
    records: list[dict[str, Any]]
    total_size: int
    done: bool


class RestReader(Protocol):
    def query_pages(self, soql: str, include_deleted: bool = False, *,
                    ahead_from_first: bool = True) -> Iterator[Any]: ...


class BulkReader(Protocol):
    """``connector.adapters.salesforce_bulk.BulkQuery``."""

    def pages(self, soql: str, include_deleted: bool = False) -> Iterator[Any]: ...


@dataclass
class TypedPage:
    records: list[dict[str, Any]]
    total_size: int
    done: bool


_BOOLEANS = {"true": True, "false": False}


class CsvRecords:
    """Bulk CSV records of one mapped object -> the shape of its REST records, a page at a
    time (a loop per column that needs it, not a walk of every field of every record)."""

    def __init__(self, obj: ObjectMapping):
        self.booleans = sorted({"IsDeleted"} | {f.sf_field for f in obj.fields.values() if f.type == "boolean"})
        self.stamps = sorted({"SystemModstamp"} | {f.sf_field for f in obj.fields.values() if f.type == "datetime"})

    def page(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``records`` in place: booleans as ``True``/``False`` (other text stays, for the
        converter to name), datetimes in the REST wire form (``...+0000``, as dead letters
        keep a record's stamp)."""
        booleans = _BOOLEANS.get
        for name in self.booleans:
            for record in records:
                value = record.get(name)
                if value is not None:
                    record[name] = booleans(value, value)
        for name in self.stamps:
            for record in records:
                value = record.get(name)
                if value.__class__ is str and value.endswith("Z"):
                    record[name] = value[:-1] + "+0000"
        return records


class BulkSource:
    def __init__(self, rest: RestReader, bulk: BulkReader, threshold: int, *, log: Any = None):
        self.rest = rest
        self.bulk = bulk
        self.threshold = threshold
        self.log = log or structlog.get_logger("connector.mirror")
        self.jobs = 0  # query jobs run (tests, benches)

    def pages(self, obj: ObjectMapping, soql: str, include_deleted: bool) -> Iterator[Any]:
        # Not fetched ahead: a query that goes to a job would drop that page unread.
        rest = self.rest.query_pages(soql, include_deleted=include_deleted, ahead_from_first=False)
        first = next(rest, None)
        if first is None:
            return
        if self.threshold <= 0 or first.done or first.total_size < self.threshold:
            yield first
            yield from rest
            return
        close = getattr(rest, "close", None)
        if close is not None:
            close()
        self.log.info("bulk.selected", object=obj.sobject, records=first.total_size, threshold=self.threshold)
        shape = CsvRecords(obj)
        job = self.bulk.pages(soql, include_deleted)
        self.jobs += 1
        try:
            try:
                page = next(job, None)
            except BulkJobFailed as exc:
                self.log.warning("bulk.job_failed", object=obj.sobject, job_id=exc.job_id, state=exc.state,
                                 reason=str(exc), fallback="rest")
                yield from self.rest.query_pages(soql, include_deleted=include_deleted)
                return
            while page is not None:
                yield TypedPage(shape.page(page.records), page.total_size, page.done)
                page = next(job, None)
        finally:
            stop = getattr(job, "close", None)
            if stop is not None:
                stop()  # an early stop aborts the job (the adapter cleans up)


def build_bulk_source(runtime: Any, log: Any = None) -> BulkSource | None:
    """The org's Bulk path from its config (``runtime``: an ``OrgContext``), or None when
    ``[sync] bulk_threshold`` is 0 or the org gateway has no Bulk API (a fake)."""
    threshold = runtime.config.sync.bulk_threshold
    if threshold <= 0:
        return None
    bulk = runtime.bulk_query()
    if bulk is None:
        return None
    return BulkSource(runtime.salesforce(), bulk, threshold, log=log)
