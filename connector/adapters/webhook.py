"""The alert receiver: one HTTP POST of JSON per alert (``connector.alerts``).

``format = "json"`` posts the alert as it is stored (event, key, org, task, message, ids,
counts); ``format = "slack"`` posts ``{"text": …}``, what Slack's incoming webhooks (and
Mattermost, Rocket.Chat, Teams' Slack-compatible hooks) take. The URL is a ``SecretStr``:
it never reaches a message, an exception or a log line (a Slack hook's URL is its token),
so failures are described by their cause and status code only, and nothing is chained to
the library's exception (whose text quotes the URL).

Every request carries ``Idempotency-Key``: a digest of the org id and the alert's key, the
same on every try of one alert, in this cycle or a later one. Delivery is at least once (a
receiver that took the alert but whose answer was lost, or a store that could not mark it
sent, gets it again), so a receiver that must see each alert once drops a key it has seen;
the JSON body also carries ``org_id`` and ``key``.

Translation at the edge: timeouts, dropped connections, 408/425/429 and 5xx are
``TransientError`` (the one retry policy retries them; the next cycle retries what is still
pending); any other answer outside 2xx is ``PermanentError``. No SDK retries (plain
``requests``, no adapter retries), no redirects followed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import requests
from pydantic import SecretStr

from connector.adapters.network import connection_cause
from connector.errors import PermanentError, TransientError

TRANSIENT_STATUSES = frozenset({408, 425, 429})


def idempotency_key(alert: Mapping[str, Any]) -> str:
    """Stable per alert of an org; a digest, so a header carries it whatever the key holds."""
    return hashlib.sha256(f"{alert.get('org_id')}\x1f{alert.get('key')}".encode()).hexdigest()[:40]


def slack_text(alert: Mapping[str, Any]) -> str:
    """One line for a chat channel: ``[acme] job_failed (mirror): mirror failed 3 times …``."""
    task = f" ({alert['task']})" if alert.get("task") else ""
    return f"[{alert.get('org')}] {alert.get('event')}{task}: {alert.get('message')}"


class WebhookSender:
    """Posts alerts to one receiver URL."""

    def __init__(self, url: SecretStr, *, format: str = "json", timeout_s: float = 5.0,  # noqa: A002 - the config key
                 session: requests.Session | None = None) -> None:
        self._url = url
        self.format = format
        self.timeout_s = timeout_s
        self._session = session or requests.Session()
        self._session.trust_env = False  # no proxy or netrc from the environment: the URL is the whole contract

    def body(self, alert: Mapping[str, Any]) -> dict[str, Any]:
        return {"text": slack_text(alert)} if self.format == "slack" else dict(alert)

    def send(self, alert: Mapping[str, Any]) -> None:
        """Deliver one alert; ``TransientError`` / ``PermanentError`` naming only the cause."""
        try:
            response = self._session.post(self._url.get_secret_value(), json=self.body(alert),
                                          timeout=(self.timeout_s, self.timeout_s), allow_redirects=False,
                                          headers={"User-Agent": "gtm-connector-alerts",
                                                   "Idempotency-Key": idempotency_key(alert)})
        except requests.RequestException as exc:
            cause = connection_cause(exc) or "request failed"
            if isinstance(exc, requests.ConnectionError | requests.Timeout):
                raise TransientError(f"alert webhook: {cause}") from None
            raise PermanentError(f"alert webhook: {cause}") from None
        status = response.status_code
        response.close()
        if 200 <= status < 300:
            return
        if status in TRANSIENT_STATUSES or status >= 500:
            raise TransientError(f"alert webhook answered HTTP {status}")
        raise PermanentError(f"alert webhook refused the alert: HTTP {status}")

    def close(self) -> None:
        self._session.close()


def build_webhook_sender(settings: Any) -> WebhookSender:
    """From an org's ``[alerts]`` section."""
    return WebhookSender(settings.webhook_url, format=settings.format, timeout_s=settings.timeout_seconds)
