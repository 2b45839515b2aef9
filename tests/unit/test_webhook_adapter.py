"""The alert webhook adapter at the HTTP edge: what is transient, what is not, and the URL
(a credential for Slack-like hooks) in no error."""

from __future__ import annotations

import pytest
import requests
import responses
from pydantic import SecretStr

from connector.adapters.webhook import WebhookSender, slack_text
from connector.errors import PermanentError, TransientError

URL = "https://hooks.example.com/services/T00/B00/tokenPART42"
ALERT = {"event": "job_failed", "key": "job_failed:mirror:7", "org": "acme", "task": "mirror",
         "message": "mirror failed 3 time(s) in a row", "ids": [], "counts": {"failures": 3}}


def sender(fmt: str = "json") -> WebhookSender:
    return WebhookSender(SecretStr(URL), format=fmt, timeout_s=1)


@responses.activate
def test_json_posts_the_alert_and_slack_posts_text() -> None:
    responses.post(URL, status=200)
    sender().send(ALERT)
    sender("slack").send(ALERT)
    import json

    assert json.loads(responses.calls[0].request.body) == ALERT
    assert json.loads(responses.calls[1].request.body) == {
        "text": "[acme] job_failed (mirror): mirror failed 3 time(s) in a row"}
    assert slack_text({**ALERT, "task": None}).startswith("[acme] job_failed: ")


@pytest.mark.parametrize(("status", "error"), [(500, TransientError), (503, TransientError), (429, TransientError),
                                               (408, TransientError), (404, PermanentError), (400, PermanentError),
                                               (301, PermanentError)])
@responses.activate
def test_answers_are_translated_without_the_url(status: int, error: type[Exception]) -> None:
    responses.post(URL, status=status)
    with pytest.raises(error) as info:
        sender().send(ALERT)
    assert str(status) in str(info.value) and "tokenPART42" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None


@pytest.mark.parametrize(("exc", "cause"), [(requests.ConnectTimeout("timed out: " + URL), "timed out"),
                                            (requests.ConnectionError("Connection refused " + URL),
                                             "connection refused")])
@responses.activate
def test_connection_failures_are_transient_and_name_the_cause(exc: Exception, cause: str) -> None:
    responses.post(URL, body=exc)
    with pytest.raises(TransientError) as info:
        sender().send(ALERT)
    assert str(info.value) == f"alert webhook: {cause}"
    assert info.value.__cause__ is None and info.value.__suppress_context__  # the library's text quotes the URL
