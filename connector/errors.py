"""The connector's exception tree.

Everything the connector raises on purpose derives from ``ConnectorError``. Adapters
translate SDK and HTTP errors (``requests``, ``simple_salesforce``, ``stripe``) into this
tree at the edge, so nothing above the adapters catches a third-party exception.

How callers treat each branch (the singer-sdk split of fatal / retriable / skippable):

``ConfigError``, ``MappingError``
    Fatal for that org: the operator must fix a file. Always name the file and key.
``TransientError``
    Retriable: timeouts, 5xx, 429, lock contention. Retried by the one policy in
    ``connector.retry``; if retries run out it ends the org's cycle, which resumes at
    the next tick from committed state.
``PermanentError``
    Retrying will not help (auth refused, API limit exhausted, a 4xx that is our bug).
    Ends the org's cycle cleanly; other orgs go on.
``OutcomeUnknown``
    A write that is not safe to repeat (a Salesforce create) was sent and its answer
    lost (read timeout, connection dropped): it may have been applied. Never retried
    blind; the caller looks the record up by its key first.
``RecordError``
    One record is bad. The caller quarantines it in ``dead_letter`` with the reason and
    carries on with the rest of the page or batch.

Messages never include secrets; adapters build them from codes and ids only.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base of everything the connector raises on purpose."""


class ConfigError(ConnectorError):
    """A configuration file is wrong. ``problems`` lists ``(file, dotted key, message)``."""

    def __init__(self, message: str, problems: list[tuple[str, str, str]] | None = None):
        super().__init__(message)
        self.problems = problems or []


class MappingError(ConnectorError):
    """A mapping set under ``mappings/`` is wrong: names the file, object and key."""


class SyncError(ConnectorError):
    """Talking to Salesforce or Stripe failed, or the data they returned is unusable."""


class TransientError(SyncError):
    """Worth retrying: timeouts, connection resets, 5xx, 429, UNABLE_TO_LOCK_ROW."""


class PermanentError(SyncError):
    """Retrying will not help: auth refused, limit exhausted, request rejected as invalid."""


class ApiLimitReached(PermanentError):
    """REQUEST_LIMIT_EXCEEDED from the org, or our own API budget guard tripped.

    Ends the org's cycle cleanly; the next cycle resumes from the committed cursors.
    """


class BulkJobFailed(PermanentError):
    """A Bulk API 2.0 query job ended Failed or Aborted in the org (its ``errorMessage`` kept);
    raised before any of its rows were read, so the mirror reads the object over REST instead."""

    def __init__(self, message: str, *, job_id: str, state: str):
        super().__init__(message)
        self.job_id = job_id
        self.state = state


class AuthError(PermanentError):
    """Credentials refused (after the one re-authentication attempt)."""


class OutcomeUnknown(SyncError):
    """A non-repeatable write was sent and no answer came back: it may have been applied.
    Not a ``TransientError``, so the retry policy never repeats it; the caller looks first."""


class RecordError(SyncError):
    """One record is bad: quarantine it with ``reason`` and go on with the rest."""

    def __init__(self, reason: str, *, record_id: str | None = None, code: str | None = None):
        super().__init__(reason if record_id is None else f"{record_id}: {reason}")
        self.reason = reason
        self.record_id = record_id
        self.code = code or "INVALID_RECORD"
