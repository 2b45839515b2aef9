"""structlog set-up: console renderer in a terminal, JSON lines otherwise (daemon, CI).

Secrets are redacted by a processor, whatever the caller passes: any key that looks like
a credential, and any value that is a pydantic ``SecretStr``. Events are stable
``noun.verb`` names with context bound by the caller (org, job, run_id).
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import MutableMapping
from typing import Any

import structlog
from pydantic import SecretStr

_SECRET_KEY = re.compile(
    r"(secret|password|passwd|token|api_key|apikey|private_key|authorization|session_id|signature)",
    re.IGNORECASE,
)
_INLINE_SECRET = re.compile(r"(sk_(?:test|live)_|whsec_|rk_(?:test|live)_)[A-Za-z0-9]+")
REDACTED = "**********"


def redact_value(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, str):
        return _INLINE_SECRET.sub(lambda m: m.group(1) + REDACTED, value)
    return value


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: blank credential-looking keys and inline Stripe keys."""
    for key in list(event_dict):
        if _SECRET_KEY.search(key) and key not in ("event",):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = redact_value(event_dict[key])
    return event_dict


class _StderrLogger:
    """Writes each rendered line to whatever ``sys.stderr`` is *now*: a stream captured at
    configure time may be closed later (test runners swap streams; daemons reopen them)."""

    def msg(self, message: str) -> None:
        stream = sys.stderr
        try:
            stream.write(message + "\n")
            stream.flush()
        except ValueError:  # closed stream: a log line is never worth crashing the caller
            pass

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


def _stderr_logger_factory(*_: Any) -> _StderrLogger:
    return _StderrLogger()


def configure(*, json: bool | None = None, level: str = "INFO") -> None:
    """Configure structlog once per process. ``json=None`` picks by whether stderr is a TTY."""
    if json is None:
        json = not sys.stderr.isatty()
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_secrets,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper(), logging.INFO)),
        logger_factory=_stderr_logger_factory,
        cache_logger_on_first_use=False,
    )


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def job_logger(org: str, job: str, run_id: str | None = None) -> structlog.typing.FilteringBoundLogger:
    """A logger bound with the context every job log line carries."""
    return structlog.get_logger("connector").bind(org=org, job=job, run_id=run_id or new_run_id())
