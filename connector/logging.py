"""structlog set-up: console renderer in a terminal, JSON lines otherwise (daemon, CI).

Secrets are redacted by a processor, whatever the caller passes: any key that looks like
a credential (at any depth), any value that is a pydantic ``SecretStr``, and credentials
written inline in text (Stripe keys, ``Bearer`` tokens, Salesforce session ids, URL
passwords) — in rendered tracebacks too. Events are stable ``noun.verb`` names.

Context: ``org`` is always the org's alias (``org_id`` when the id is meant). A job run binds
``org``, ``job`` and ``run_id`` once (``bound_run``, entered by ``connector.jobs.run_job``)
so every line of the run carries them, also from code holding no bound logger (the retry
policy, adapters). The operator picks level and format once (``choose``: ``--log-level`` /
``GTM_LOG_LEVEL``, ``--log-format`` / ``GTM_LOG_FORMAT``); callers only give defaults.
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
# Credentials as they appear inside text (an error message, a traceback): the prefix that
# says what it was is kept, the secret part blanked.
_INLINE_SECRETS = (
    re.compile(r"((?:sk|rk)_(?:test|live)_|whsec_)[A-Za-z0-9]+"),  # Stripe keys, webhook secrets
    re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=!-]+"),  # an Authorization header value
    re.compile(r"(\b00D[A-Za-z0-9]{12,15}!)[A-Za-z0-9._-]+"),  # a Salesforce session id
)
_URL_PASSWORDS = (
    # URL userinfo: up to the last '@' of the word, so a password holding '@' or '/' goes whole
    re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s:/?#@'\"]*:)[^\s'\"]*@"),
    re.compile(r"(?i)([?&]password=)[^&\s'\"]+"),
)
REDACTED = "**********"


def _blank(patterns: tuple[re.Pattern[str], ...], text: str, marker: str) -> str:
    for pattern in patterns:
        text = pattern.sub(lambda m: m.group(1) + marker + ("@" if m.group(0).endswith("@") else ""), text)
    return text


def blank_url_passwords(text: str, marker: str = REDACTED) -> str:
    """``text`` with every password in a URL (``scheme://user:PASSWORD@``, ``?password=``)
    replaced by ``marker``; ``config.redact_url`` uses it with the shorter ``***``."""
    return _blank(_URL_PASSWORDS, text, marker)


def _redact_text(text: str) -> str:
    return blank_url_passwords(_blank(_INLINE_SECRETS, text, REDACTED))


def redact_value(value: Any) -> Any:
    """``value`` fit for a log line: SecretStr blanked, inline credentials in text blanked,
    and the same inside dicts (credential-looking keys too), lists and tuples."""
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {k: REDACTED if isinstance(k, str) and _SECRET_KEY.search(k) else redact_value(v)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):  # a namedtuple's constructor differs: plain sequences out
        return [redact_value(v) for v in value] if isinstance(value, list) else tuple(redact_value(v) for v in value)
    return value


def redact_secrets(_: Any, __: str, event_dict: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: blank credential-looking keys and inline credentials. Runs after
    ``format_exc_info`` so that a rendered traceback is redacted like any other value."""
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


LEVELS = ("debug", "info", "warning", "error")
FORMATS = ("json", "console")
# What the operator chose with --log-level/--log-format (or GTM_LOG_LEVEL/GTM_LOG_FORMAT):
# it wins over the default a command or the daemon passes to ``configure``.
_chosen: dict[str, str] = {}


def choose(*, level: str | None = None, fmt: str | None = None) -> None:
    """Record the operator's log level and format (None: no choice) for every later
    ``configure`` call; replaces an earlier choice."""
    _chosen.clear()
    if level:
        _chosen["level"] = level.lower()
    if fmt:
        _chosen["format"] = fmt.lower()


def configure(*, json: bool | None = None, level: str = "INFO") -> None:
    """Configure structlog. ``json``/``level`` are the caller's defaults (``json=None``:
    JSON unless stderr is a terminal); the operator's choice (``choose``) overrides both."""
    if "format" in _chosen:
        json = _chosen["format"] == "json"
    level = _chosen.get("level", level)
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
            structlog.processors.format_exc_info,
            redact_secrets,
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


def bound_run(org: str, job: str, run_id: str) -> Any:
    """Context manager: every log line of this thread inside it carries ``org`` (the alias),
    ``job`` and ``run_id`` — also lines from code that holds no bound logger (the retry
    policy, adapters). The one binding of a run's context; ``run_job`` enters it."""
    return structlog.contextvars.bound_contextvars(org=org, job=job, run_id=run_id)
