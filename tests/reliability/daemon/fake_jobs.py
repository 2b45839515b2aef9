"""Stand-in job functions for daemon framework tests, driven by environment variables.

They are registered through ``run_daemon(registry=...)`` by ``launch.py``, the way the
daemon takes any job; each run appends one JSON line per event to ``$GTM_TEST_TRACE``
(O_APPEND: lines from several processes don't interleave) so a test can see which
instance ran which (org, job) when, page by page.

``$GTM_TEST_BEHAVIOUR`` is JSON ``{alias: {"pages": n, "page_s": s, "raise": "AuthError",
"ignore_stop": bool, "hold_write_lock": bool}}``; an org absent from it runs one quick page.
``hold_write_lock`` (with ``ignore_stop``): once the stop is asked, the pages that follow run
inside one store transaction, which on SQLite holds the file's write lock until the run
returns or the process exits.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Mapping
from contextlib import ExitStack
from typing import Any

from sqlalchemy import text

from connector import errors
from connector.bootstrap import OrgRuntime


def _trace(runtime: OrgRuntime, job: str, what: str, **fields: Any) -> None:
    line = json.dumps({"org": runtime.alias, "job": job, "what": what, "pid": os.getpid(), "t": time.time(),
                       **fields}) + "\n"
    fd = os.open(os.environ["GTM_TEST_TRACE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _behaviour(alias: str) -> dict[str, Any]:
    return dict(json.loads(os.environ.get("GTM_TEST_BEHAVIOUR") or "{}").get(alias, {}))


def _run(job: str, runtime: OrgRuntime, log: Any, stop: threading.Event | None) -> Mapping[str, int]:
    plan = _behaviour(runtime.alias)
    _trace(runtime, job, "start")
    if plan.get("raise"):
        _trace(runtime, job, "raise")
        raise getattr(errors, plan["raise"])(f"{runtime.alias}: invalid_client (client credentials refused)")
    pages = int(plan.get("pages", 1))
    done = 0
    locked = False
    with ExitStack() as held:
        for page in range(pages):
            stopping = stop is not None and stop.is_set()
            if stopping and not plan.get("ignore_stop"):
                break
            if stopping and plan.get("hold_write_lock") and not locked:
                held.enter_context(runtime.uow()).session.execute(text("SELECT 1"))  # SQLite: BEGIN IMMEDIATE
                locked = True
                log.info("write_lock.held")
            done += _page(job, runtime, log, plan, page)
    _trace(runtime, job, "end", pages=done)
    return {"order": done}


def _page(job: str, runtime: OrgRuntime, log: Any, plan: dict[str, Any], page: int) -> int:
    time.sleep(float(plan.get("page_s", 0)))
    _trace(runtime, job, "page", page=page)
    log.info("page.committed", page=page)
    return 1


def mirror(runtime: OrgRuntime, *, log: Any, dry_run: bool = False,
           stop: threading.Event | None = None) -> Mapping[str, int]:
    return _run("mirror", runtime, log, stop)


def invoicing(runtime: OrgRuntime, *, log: Any, dry_run: bool = False,
              stop: threading.Event | None = None) -> Mapping[str, int]:
    return _run("invoicing", runtime, log, stop)
