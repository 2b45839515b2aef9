"""Stripe's webhook calls reach the daemon's receiver: signed events for either org on
``/stripe/webhook``, one org's on ``/stripe/webhook/<alias>``, forgeries refused."""

from __future__ import annotations

import hashlib
import hmac
import importlib.util
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.fixtures.daemon import DaemonLauncher, DaemonProc, new_org_id, write_configs

pytestmark = pytest.mark.slow

SECRETS = {"acme": "whsec_acme_endpoint_secret", "globex": "whsec_globex_endpoint_secret"}


def signed(secret: str, event: dict[str, object]) -> tuple[bytes, str]:
    body = json.dumps(event).encode()
    t = int(time.time())
    v1 = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return body, f"t={t},v1={v1}"


def post(d: DaemonProc, path: str, body: bytes, signature: str) -> tuple[int, dict[str, object]]:
    request = urllib.request.Request(d.base + path, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "Stripe-Signature": signature})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        return exc.code, json.loads(raw) if raw.startswith(b"{") else {"text": raw.decode()}


def an_invoice_paid_event(n: int) -> dict[str, object]:
    return {"id": f"evt_test_{n}", "object": "event", "type": "invoice.paid", "created": int(time.time()),
            "livemode": False, "api_version": "2024-06-20",
            "data": {"object": {"id": f"in_test_{n}", "object": "invoice", "status": "paid",
                                "amount_paid": 840000, "metadata": {}}}}


def test_signed_events_reach_the_receiver_and_forgeries_are_refused(tmp_path: Path,
                                                                    daemons: DaemonLauncher) -> None:
    if importlib.util.find_spec("connector.services.invoice_status") is None:
        pytest.skip("connector.services.invoice_status is not in this build yet")
    config_dir = write_configs(
        tmp_path / "config", {"acme": new_org_id(), "globex": new_org_id()}, data_dir=tmp_path / "data", jobs=(),
        stripe={alias: {"stripe": {"api_key": {"env": f"{alias.upper()}_STRIPE_KEY"},
                                   "webhook_secret": {"env": f"{alias.upper()}_WEBHOOK_SECRET"}}}
                for alias in SECRETS},
    )
    env = {"ACME_SF_SECRET": "x", "GLOBEX_SF_SECRET": "y", "ACME_STRIPE_KEY": "sk_test_a",
           "GLOBEX_STRIPE_KEY": "sk_test_g", "ACME_WEBHOOK_SECRET": SECRETS["acme"],
           "GLOBEX_WEBHOOK_SECRET": SECRETS["globex"]}
    d = daemons.start("daemon", config_dir, env=env)

    body, sig = signed(SECRETS["globex"], an_invoice_paid_event(1))
    status, answer = post(d, "/stripe/webhook", body, sig)
    assert status == 200 and answer["received"] is True

    body, sig = signed(SECRETS["acme"], an_invoice_paid_event(2))
    assert post(d, "/stripe/webhook/acme", body, sig)[0] == 200
    assert post(d, "/stripe/webhook/globex", body, sig)[0] == 400  # acme's event on globex's endpoint
    assert post(d, "/stripe/webhook/initech", body, sig)[0] == 404

    forged_body, forged_sig = signed("whsec_not_the_secret", an_invoice_paid_event(3))
    assert post(d, "/stripe/webhook", forged_body, forged_sig)[0] == 400
    assert d.find("webhook.mounted") and d.find("webhook.rejected")
    log_text = d.log_path.read_text()
    assert all(secret not in log_text for secret in SECRETS.values())
