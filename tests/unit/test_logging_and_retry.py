"""Logs carry context and never secrets; the one retry policy retries only TransientError."""

from __future__ import annotations

import pytest
import structlog
from pydantic import SecretStr
from structlog.testing import capture_logs

from connector.errors import PermanentError, TransientError
from connector.logging import REDACTED, job_logger, redact_secrets
from connector.retry import retrying


def test_redaction_of_keys_values_and_inline_stripe_keys():
    event = redact_secrets(None, "info", {
        "event": "auth.ok", "client_secret": "abc", "api_key": "sk_test_123", "token": SecretStr("x"),
        "detail": "request failed with key sk_live_ABCdef123 and whsec_zzz", "org": "acme",
    })
    assert event["client_secret"] == event["api_key"] == event["token"] == REDACTED
    assert "ABCdef123" not in event["detail"] and "zzz" not in event["detail"]
    assert event["org"] == "acme"


def test_job_logger_binds_org_job_and_run_id():
    with capture_logs() as logs:
        job_logger("acme", "mirror", "run1").info("page.committed", records=3)
    assert logs == [{"org": "acme", "job": "mirror", "run_id": "run1", "records": 3,
                     "event": "page.committed", "log_level": "info"}]


def test_transient_errors_are_retried_then_succeed():
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("503 from server")
        return "ok"

    with capture_logs() as logs:
        assert retrying("op.test", max_wait_s=0.01)(flaky) == "ok"
    assert len(calls) == 3
    assert [entry["event"] for entry in logs] == ["call.retrying", "call.retrying"]


def test_permanent_errors_are_not_retried():
    calls = []

    def refused():
        calls.append(1)
        raise PermanentError("401")

    with pytest.raises(PermanentError):
        retrying("op.test", max_wait_s=0.01)(refused)
    assert len(calls) == 1


def test_retries_give_up_with_the_last_error():
    with pytest.raises(TransientError, match="still down"):
        retrying("op.test", attempts=2, max_wait_s=0.01)(lambda: (_ for _ in ()).throw(TransientError("still down")))


def test_structlog_is_usable_without_configuration():
    structlog.get_logger().info("smoke.ok")


def test_configured_logging_follows_a_replaced_stderr(monkeypatch, capsys):
    import io
    import json

    from connector.logging import configure

    try:
        configure(json=True)
        first = io.StringIO()
        monkeypatch.setattr("sys.stderr", first)
        structlog.get_logger().info("first.line", api_key="sk_test_abc")
        first.close()  # a closed stream must not break later logging
        structlog.get_logger().info("dropped.line")
        second = io.StringIO()
        monkeypatch.setattr("sys.stderr", second)
        structlog.get_logger().info("second.line", org="acme")
        line = json.loads(second.getvalue())
        assert line["event"] == "second.line" and line["org"] == "acme"
    finally:
        structlog.reset_defaults()
