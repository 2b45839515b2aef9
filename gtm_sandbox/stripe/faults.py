"""Per-endpoint call counters, a request log (with idempotency keys) and fault injection.

Endpoints are named by method and path template, e.g. ``POST /v1/invoices/{id}/finalize``;
fault patterns may use ``*`` (``POST *``, ``*``). Fault kinds:

``429`` / ``500`` / ``503`` (any HTTP status)
    answered with Stripe's error body *before* the request is applied; nothing is saved
    under the idempotency key, so a retry with the same key executes normally.
``reset``
    the request is applied (and its response saved under its idempotency key), then the
    connection is dropped without an answer: the client cannot know it succeeded.
``reset_before``
    the connection is dropped before anything is applied.
``latency``
    the answer is delayed by ``latency_s`` seconds (combined with the above or alone).
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

FAULT_KINDS = ("status", "reset", "reset_before", "latency")


@dataclass
class Fault:
    pattern: str
    kind: str
    remaining: int | None
    status: int = 500
    latency_s: float = 0.0

    def matches(self, endpoint: str) -> bool:
        return fnmatch.fnmatchcase(endpoint, self.pattern)


@dataclass
class Plan:
    """What the faults say about one request."""

    latency_s: float = 0.0
    status: int | None = None
    reset: str | None = None  # "after" | "before"

    @property
    def label(self) -> str | None:
        if self.status is not None:
            return str(self.status)
        if self.reset is not None:
            return f"reset_{self.reset}"
        return "latency" if self.latency_s else None


@dataclass
class Faults:
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _faults: list[Fault] = field(default_factory=list)
    _counters: Counter[str] = field(default_factory=Counter)
    _log: list[dict[str, Any]] = field(default_factory=list)

    # -- configuration -------------------------------------------------------------------
    def add(self, pattern: str, kind: str, *, times: int | None = 1, status: int = 500, latency_s: float = 0.0) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {FAULT_KINDS}")
        with self._lock:
            self._faults.append(Fault(pattern, kind, times, status, latency_s))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    # -- per request ---------------------------------------------------------------------
    def plan(self, endpoint: str) -> Plan:
        plan = Plan()
        with self._lock:
            for fault in list(self._faults):
                if not fault.matches(endpoint):
                    continue
                if fault.kind == "latency":
                    plan.latency_s += fault.latency_s
                elif plan.status is None and plan.reset is None:
                    if fault.kind == "status":
                        plan.status = fault.status
                    else:
                        plan.reset = "after" if fault.kind == "reset" else "before"
                    plan.latency_s += fault.latency_s
                else:
                    continue
                if fault.remaining is not None:
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
        return plan

    def count(self, endpoint: str) -> None:
        with self._lock:
            self._counters[endpoint] += 1

    def record(self, entry: dict[str, Any]) -> dict[str, Any]:
        entry.setdefault("at", time.time())
        with self._lock:
            entry["seq"] = len(self._log) + 1
            self._log.append(entry)
        return entry

    # -- reading ---------------------------------------------------------------------------
    def counters(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counters)

    def requests(self, endpoint: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(e) for e in self._log if endpoint is None or fnmatch.fnmatchcase(e["endpoint"], endpoint)]

    def reset_counters(self) -> None:
        with self._lock:
            self._counters.clear()
            self._log.clear()
