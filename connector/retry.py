"""The one retry policy. Every retried call in the connector goes through ``retrying``.

Only ``TransientError`` is retried; adapters decide what is transient when they translate
errors. SDK-level retries are switched off where ours are on (simple-salesforce has none;
the Stripe client is built with ``max_network_retries=0``) so retries never stack.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import structlog
import tenacity
from tenacity import retry_if_exception_type, stop_after_attempt, wait_random_exponential

from connector.errors import TransientError

T = TypeVar("T")

DEFAULT_ATTEMPTS = 5
DEFAULT_MAX_WAIT_S = 30.0


def _log_retry(op: str) -> Callable[[tenacity.RetryCallState], None]:
    log = structlog.get_logger("connector.retry")

    def before_sleep(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.warning(
            "call.retrying",
            op=op,
            attempt=state.attempt_number,
            wait_s=round(state.next_action.sleep, 3) if state.next_action else None,
            error=type(exc).__name__ if exc else None,
            detail=str(exc) if exc else None,
        )

    return before_sleep


def retrying(
    op: str,
    *,
    attempts: int = DEFAULT_ATTEMPTS,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    min_wait_s: float = 0.0,
) -> tenacity.Retrying:
    """A tenacity ``Retrying`` for operation ``op``: retries ``TransientError`` only,
    exponential jittered back-off, re-raises the last error when attempts run out."""
    return tenacity.Retrying(
        retry=retry_if_exception_type(TransientError),
        wait=wait_random_exponential(multiplier=0.2, min=min_wait_s, max=max_wait_s),
        stop=stop_after_attempt(attempts),
        before_sleep=_log_retry(op),
        reraise=True,
    )


def call_with_retry(op: str, fn: Callable[[], T], **policy: float) -> T:
    """Run ``fn()`` under the policy; shorthand for the common case."""
    return retrying(op, **policy)(fn)  # type: ignore[arg-type]
