"""Bulk API 2.0 query jobs, through the org's one authenticated gateway.

``BulkQuery(org).pages(soql, include_deleted)`` runs a query job and yields its rows page
by page, as ``Page``s of plain records (field -> text, ``None`` for an empty CSV value,
as Salesforce documents for Bulk CSV: there is no empty string, only null):

1. ``POST jobs/query`` (``query`` or ``queryAll``, CSV, comma, LF);
2. polls ``GET jobs/query/{id}`` with a growing wait (``poll_s`` doubling to
   ``poll_max_s``) until ``JobComplete``; a job that ends ``Failed`` or ``Aborted`` raises
   ``BulkJobFailed`` with Salesforce's ``errorMessage`` (before any row is yielded);
   one still running after ``wait_s`` is aborted and raises ``TransientError``;
3. reads the results set by set (``maxRecords`` = ``max_records``, the first set one page
   only, ``locator`` from the previous answer's ``Sforce-Locator`` until ``null``). One
   set is one API call, read whole (so the one retry policy may repeat it: a locator can
   be read again) and parsed into pages of ``page_size`` records by a reader thread that
   works ahead of the caller (``prefetch`` pages), so memory is bounded by a set and a
   few pages, never by the job;
4. deletes the job when done, and aborts it (best effort) when the caller stops early.

Every request goes through ``SalesforceOrg.request``: the API budget guard, one
re-authentication on 401, the error translation at this edge and the one retry policy
(``connector.retry``). Each request is one API call and is counted as one.
"""

from __future__ import annotations

import csv
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import requests
import structlog
from simple_salesforce import Salesforce
from simple_salesforce.util import exception_handler

from connector.adapters.salesforce import Page, SalesforceOrg, dumps
from connector.errors import BulkJobFailed, PermanentError, TransientError

RUNNING = ("UploadComplete", "InProgress")


@dataclass(frozen=True)
class BulkSettings:
    max_records: int = 50_000  # records per results set (one API call)
    page_size: int = 10_000  # records per yielded page (one unit of work for the mirror)
    poll_s: float = 0.05  # first wait between polls; doubles up to poll_max_s
    poll_max_s: float = 5.0
    wait_s: float = 1800.0  # a job still running after this is aborted
    prefetch: int = 2  # pages parsed ahead of the caller (see ``pages``)


class BulkQuery:
    """Bulk API 2.0 query jobs of one org (see the module docstring)."""

    def __init__(self, org: SalesforceOrg, settings: BulkSettings | None = None, *, log: Any = None,
                 sleep: Callable[[float], None] = time.sleep):
        self.org = org
        self.settings = settings or BulkSettings()
        self._log = log or structlog.get_logger("connector.salesforce_bulk")
        self._sleep = sleep

    # -------------------------------------------------------------- job lifecycle

    def create(self, soql: str, include_deleted: bool = False) -> dict[str, Any]:
        body = {"operation": "queryAll" if include_deleted else "query", "query": soql, "contentType": "CSV",
                "columnDelimiter": "COMMA", "lineEnding": "LF"}
        return dict(self.org.request("bulk.create", lambda sf: sf.restful("jobs/query", method="POST",
                                                                          data=dumps(body))) or {})

    def info(self, job_id: str) -> dict[str, Any]:
        return dict(self.org.request("bulk.job", lambda sf: sf.restful(f"jobs/query/{job_id}")) or {})

    def abort(self, job_id: str) -> None:
        body = dumps({"state": "Aborted"})
        self.org.request("bulk.abort", lambda sf: sf.restful(f"jobs/query/{job_id}", method="PATCH", data=body))

    def delete(self, job_id: str) -> None:
        self.org.request("bulk.delete", lambda sf: sf.restful(f"jobs/query/{job_id}", method="DELETE"))

    def wait(self, job_id: str) -> dict[str, Any]:
        """Poll until the job leaves UploadComplete/InProgress; its info when JobComplete."""
        started = time.monotonic()
        delay = self.settings.poll_s
        while True:
            info = self.info(job_id)
            state = str(info.get("state"))
            if state == "JobComplete":
                return info
            if state not in RUNNING:
                raise BulkJobFailed(f"Bulk API 2.0 query job {job_id} ended {state}: "
                                    f"{info.get('errorMessage') or 'no errorMessage'}", job_id=job_id, state=state)
            if time.monotonic() - started >= self.settings.wait_s:
                self._quietly(self.abort, job_id)
                raise TransientError(f"Bulk API 2.0 query job {job_id} still {state} after "
                                     f"{self.settings.wait_s:g} s: aborted; the next run starts another")
            self._sleep(delay)
            delay = min(delay * 2, self.settings.poll_max_s)

    def results(self, job_id: str, locator: str | None, max_records: int | None = None) -> tuple[str, str | None]:
        """One results set (``max_records`` records at most, by default the settings'): its
        CSV text and the next locator (None after the last)."""
        params: dict[str, Any] = {"maxRecords": max_records or self.settings.max_records}
        if locator:
            params["locator"] = locator

        def fetch(sf: Salesforce) -> tuple[str, str | None]:
            resp = sf.session.request("GET", f"{sf.base_url}jobs/query/{job_id}/results", headers=sf.headers,
                                      params=params)
            if resp.status_code >= 300:
                exception_handler(resp, name="jobs/query/results")
            resp.encoding = "utf-8"
            following = resp.headers.get("Sforce-Locator")
            return resp.text, (None if following in (None, "", "null") else following)

        return self.org.request("bulk.results", fetch)

    # -------------------------------------------------------------- rows

    def pages(self, soql: str, include_deleted: bool = False) -> Iterator[Page]:
        """The job's rows as pages of ``page_size`` records (the last one ``done``).

        Once the job is complete a reader thread fetches and parses the result sets ahead
        of the caller (at most ``prefetch`` pages wait in a queue), so the org preparing
        and sending the next set overlaps with the caller storing this one. The caller's
        thread never talks to the org while the reader runs; closing the generator stops
        the reader before the job is aborted."""
        job = self.create(soql, include_deleted)
        job_id = str(job["id"])
        finished = False
        log = self._log.bind(job_id=job_id)
        reader: _Reader | None = None
        try:
            info = self.wait(job_id)
            total = int(info.get("numberRecordsProcessed") or 0)
            log.info("bulk.job_complete", records=total, object=info.get("object"))
            reader = _Reader(self, job_id, self.settings.page_size, self.settings.prefetch)
            number = 0
            for records, last in reader:
                number += 1
                yield Page(records, total, last, number)
            finished = True
        finally:
            if reader is not None:
                reader.stop()
            if finished:
                self._quietly(self.delete, job_id)
            else:  # stopped, crashed or failed: don't leave a job running (delete it if it is over)
                self._quietly(self._abort_or_delete, job_id)

    def _abort_or_delete(self, job_id: str) -> None:
        if str(self.info(job_id).get("state")) in RUNNING:
            self.abort(job_id)
        else:
            self.delete(job_id)

    def _quietly(self, fn: Callable[[str], None], job_id: str) -> None:
        try:
            fn(job_id)
        except (PermanentError, TransientError, requests.RequestException) as exc:
            self._log.warning("bulk.cleanup_failed", job_id=job_id, error=type(exc).__name__, detail=str(exc))


class _Reader:
    """The result sets of one job, fetched and parsed in a thread of their own into pages
    of ``page_size`` records; iterating yields ``(records, last)``, re-raising the reader's
    error (already translated and retried by the gateway) where it happened."""

    _END = object()

    def __init__(self, bulk: BulkQuery, job_id: str, page_size: int, prefetch: int):
        self._bulk = bulk
        self._job_id = job_id
        self._page_size = page_size
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=max(1, prefetch))
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bulk-results-{job_id}", daemon=True)
        self._thread.start()

    def _put(self, item: Any) -> bool:
        while not self._stopped.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self) -> None:
        try:
            locator: str | None = None
            pending: list[dict[str, Any]] = []
            # The first set is one page: the caller starts storing while the org prepares
            # the next (full) set, rather than waiting for a whole set to be encoded and sent.
            size = min(self._page_size, self._bulk.settings.max_records)
            while not self._stopped.is_set():
                text, locator = self._bulk.results(self._job_id, locator, size)
                size = self._bulk.settings.max_records
                for record in parse_csv(text):
                    pending.append(record)
                    if len(pending) >= self._page_size:
                        if not self._put((pending, False)):
                            return
                        pending = []
                del text
                if locator is None:
                    self._put((pending, True))
                    return
        except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
            self._put(exc)

    def __iter__(self) -> Iterator[tuple[list[dict[str, Any]], bool]]:
        while True:
            item = self._queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if item[1]:
                return

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self._bulk.settings.poll_max_s + 60)


def _lines(text: str) -> Iterator[str]:
    """The lines of ``text`` with their endings, lazily (``io.StringIO`` would hold a copy
    of a whole result set at four bytes a character). Salesforce quotes every value, and
    the csv reader joins the lines of a quoted value that holds a line break."""
    start, size = 0, len(text)
    while start < size:
        end = text.find("\n", start)
        if end < 0:
            yield text[start:]
            return
        yield text[start : end + 1]
        start = end + 1


def parse_csv(text: str) -> Iterator[dict[str, Any]]:
    """Records of a Bulk API 2.0 CSV results set (header row first, LF line endings); an
    empty value is None (Salesforce writes null as an empty value and has no empty
    strings).

    Salesforce quotes every value, so when the set's quote characters are exactly two per
    value of every line (no value holds a quote or a line break) each line is its values
    joined by ``","``: a plain split, several times faster than the csv module. Any other
    set goes through the csv module."""
    if not text:
        return
    body = text[:-1] if text.endswith("\n") else text
    lines = body.split("\n")
    header_line = lines[0]
    columns = header_line.count('","') + 1 if header_line.startswith('"') else 0
    if columns and text.count('"') == 2 * columns * len(lines):
        header = header_line[1:-1].split('","')
        for line in lines[1:]:
            yield {name: value or None for name, value in zip(header, line[1:-1].split('","'), strict=True)}
        return
    del lines
    reader = csv.reader(_lines(text))
    names = next(reader, None)
    if names is None:
        return
    for row in reader:
        yield {name: value or None for name, value in zip(names, row, strict=True)}
