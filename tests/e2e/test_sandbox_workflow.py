"""Running the sandboxes yourself, as `stripe listen` users do: `sandbox org` / `sandbox stripe`
as separate processes with `--state-dir` (restarted, killed), `--write-config` driving the
connector's own commands, `--forward-to` a receiver, and PATCH through `sandbox control`."""

from __future__ import annotations

import json
import os
import queue
import select
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import pytest
import stripe
from typer.testing import CliRunner

from connector.demo import WEBHOOK_EVENTS
from connector.entrypoints.cli import app
from gtm_sandbox.org import SandboxOrg
from gtm_sandbox.stripe import StripeSandbox
from gtm_sandbox.stripe.forward import CONNECTOR_EVENTS

SANDBOX = [sys.executable, "-m", "connector.entrypoints.cli", "sandbox"]


class Sandboxes:
    """Sandbox subprocesses started by a test, each read up to its ready line; all ended at teardown."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        errors = tempfile.TemporaryFile("w+")  # not a pipe: nobody reads it while the sandbox runs
        proc = subprocess.Popen([*SANDBOX, *args, "--json"], stdout=subprocess.PIPE, stderr=errors, text=True)
        self.procs.append(proc)
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            proc.wait(timeout=10)
            errors.seek(0)
            raise AssertionError(f"sandbox {args[0]} did not start: {errors.read()}")
        errors.close()
        return proc, json.loads(line)

    @staticmethod
    def stop(proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=10)


@pytest.fixture
def sandboxes() -> Iterator[Sandboxes]:
    running = Sandboxes()
    try:
        yield running
    finally:
        running.close()


def cli(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def said(result: Any) -> str:
    """The output as one line: typer draws usage errors in a wrapped box."""
    return " ".join(result.output.replace("│", " ").split())


def owner_only(directory: Path) -> None:
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in directory.iterdir() if f.is_file()}
    assert modes and set(modes.values()) == {0o600}, modes


def stripe_client(ready: dict[str, Any]) -> stripe.StripeClient:
    return stripe.StripeClient(ready["api_key"], base_addresses={"api": ready["api_base"]}, max_network_retries=0)


def test_the_connector_list_of_webhook_events_is_the_one_forwarded_by_default() -> None:
    assert CONNECTOR_EVENTS == WEBHOOK_EVENTS


def test_a_written_config_keeps_working_across_restarts_with_the_same_credentials_and_data(
        sandboxes: Sandboxes, tmp_path: Path) -> None:
    org_dir, stripe_dir, config = tmp_path / "org", tmp_path / "stripe", tmp_path / "sandbox.toml"
    stripe_proc, stripe_ready = sandboxes.start("stripe", "--state-dir", str(stripe_dir), "--save-every", "0.1")
    customer = stripe_client(stripe_ready).v1.customers.create(params={"email": "ap@acme.example"})
    org_proc, org_ready = sandboxes.start("org", "--state-dir", str(org_dir), "--write-config", str(config),
                                          "--stripe-state-dir", str(stripe_dir), "--save-every", "0.1")
    owner_only(org_dir)
    owner_only(stripe_dir)
    jwt_key = Path(org_ready["private_key_file"]).read_bytes()
    assert "[stripe]" in config.read_text() and org_ready["client_secret"] not in config.read_text()

    checked = cli("config", "check", str(config))
    assert checked.exit_code == 0, checked.output
    synced = cli("run-job", "mirror", "--config", str(config), "--json")
    assert synced.exit_code == 0, synced.output
    assert json.loads(synced.stdout)["orgs"][0]["status"] == "ok"

    url, ca = org_ready["instance_url"], org_ready["ca_file"]
    offers = json.loads(cli("sandbox", "control", url, "records/SfdcPartnerOffer", "--ca-file", ca).stdout)
    offer_id = offers["records"][0]["Id"]
    renamed = cli("sandbox", "control", url, "records/SfdcPartnerOffer",
                  json.dumps({"records": [{"Id": offer_id, "CustomerName": "Renamed After Restart Co"}]}),
                  "--method", "PATCH", "--ca-file", ca)
    assert renamed.exit_code == 0, renamed.output
    sandboxes.stop(org_proc)
    sandboxes.stop(stripe_proc)

    again = cli("sandbox", "org", "--state-dir", str(org_dir), "--write-config", str(config),
                "--stripe-state-dir", str(stripe_dir))
    assert again.exit_code == 2 and "exists; pass --force" in said(again)

    stripe_proc, stripe_again = sandboxes.start("stripe", "--state-dir", str(stripe_dir), "--save-every", "0.1")
    org_proc, org_again = sandboxes.start("org", "--state-dir", str(org_dir))
    same = ("instance_url", "client_id", "client_secret", "password", "org_id", "ca_file")
    assert {k: org_again[k] for k in same} == {k: org_ready[k] for k in same}
    assert Path(org_again["private_key_file"]).read_bytes() == jwt_key
    assert stripe_again == stripe_ready  # same port, key and platform account
    assert stripe_client(stripe_again).v1.customers.retrieve(customer.id).email == "ap@acme.example"

    synced = cli("sync", "--config", str(config), "--json")  # the same file: CA, secret and port still hold
    assert synced.exit_code == 0, synced.output
    offers = json.loads(cli("sandbox", "control", url, "records/SfdcPartnerOffer", "--ca-file", ca).stdout)
    assert {o["Id"]: o["CustomerName"] for o in offers["records"]}[offer_id] == "Renamed After Restart Co"

    # Killed without a chance to save: what changed a moment before is there after a restart.
    late = stripe_client(stripe_again).v1.customers.create(params={"email": "late@acme.example"})
    saved, deadline = stripe_dir / "stripe-data.json", time.monotonic() + 10
    while late.id not in saved.read_text() and time.monotonic() < deadline:  # saved within --save-every
        time.sleep(0.05)
    stripe_proc.kill()
    stripe_proc.wait(timeout=10)
    # The Stripe sandbox can write the config too, from the org's state dir.
    from_stripe = tmp_path / "from-stripe.toml"
    _, after_kill = sandboxes.start("stripe", "--state-dir", str(stripe_dir), "--write-config", str(from_stripe),
                                    "--org-state-dir", str(org_dir))
    assert stripe_client(after_kill).v1.customers.retrieve(late.id).email == "late@acme.example"
    assert from_stripe.read_text() == config.read_text()
    sandboxes.stop(org_proc)


class Receiver:
    """A tiny webhook receiver on 127.0.0.1: every POST's body and Stripe-Signature."""

    def __init__(self) -> None:
        self.received: queue.Queue[tuple[bytes, str]] = queue.Queue()
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.put((body, self.headers.get("Stripe-Signature", "")))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/stripe/webhook"
        Thread(target=self.server.serve_forever, daemon=True).start()

    def event(self, event_type: str, secret: str, timeout: float = 15) -> stripe.Event:
        deadline = time.monotonic() + timeout
        while True:
            body, signature = self.received.get(timeout=max(0.1, deadline - time.monotonic()))
            event = stripe.Webhook.construct_event(body.decode(), signature, secret)
            if event.type == event_type:
                return event


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    try:
        yield r
    finally:
        r.server.shutdown()
        r.server.server_close()


def finalize_an_invoice(client: stripe.StripeClient) -> str:
    customer = client.v1.customers.create(params={"email": "ap@acme.example"})
    invoice = client.v1.invoices.create(params={"customer": customer.id, "collection_method": "send_invoice",
                                                "days_until_due": 30})
    client.v1.invoice_items.create(params={"customer": customer.id, "invoice": invoice.id, "amount": 840000,
                                           "currency": "usd"})
    assert invoice.id is not None
    client.v1.invoices.finalize_invoice(invoice.id)
    return invoice.id


def test_forward_to_delivers_signed_events_with_the_printed_secret_kept_across_restarts(
        sandboxes: Sandboxes, receiver: Receiver, tmp_path: Path) -> None:
    state = tmp_path / "stripe"
    proc, ready = sandboxes.start("stripe", "--state-dir", str(state), "--forward-to", receiver.url)
    secret = ready["webhook_secret"]
    assert secret.startswith("whsec_") and (state / "webhook_secret").read_text() == secret
    invoice_id = finalize_an_invoice(stripe_client(ready))
    event = receiver.event("invoice.finalized", secret)
    assert event.data.object["id"] == invoice_id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(json.dumps({"id": event.id}), "t=1,v1=00", secret)
    sandboxes.stop(proc)

    _, again = sandboxes.start("stripe", "--state-dir", str(state), "--forward-to", receiver.url)
    assert again["webhook_secret"] == secret
    finalize_an_invoice(stripe_client(again))
    assert receiver.event("invoice.finalized", secret).type == "invoice.finalized"


def test_forward_to_takes_loopback_urls_and_known_events_only() -> None:
    elsewhere = cli("sandbox", "stripe", "--forward-to", "https://example.com/hook")
    assert elsewhere.exit_code == 2 and "loopback" in said(elsewhere)
    no_events = cli("sandbox", "stripe", "--forward-to", "http://127.0.0.1:9/hook", "--events", " , ")
    assert no_events.exit_code == 2 and "at least one event type" in said(no_events)
    unknown = cli("sandbox", "stripe", "--forward-to", "http://127.0.0.1:9/hook", "--events", "invoice.nonsense")
    assert unknown.exit_code == 2 and "is not a Stripe event type" in said(unknown)


def test_write_config_needs_the_other_sandboxs_state(tmp_path: Path) -> None:
    lone = cli("sandbox", "org", "--state-dir", str(tmp_path / "org"), "--write-config", str(tmp_path / "c.toml"))
    assert lone.exit_code == 2 and "--stripe-state-dir" in said(lone)
    empty = cli("sandbox", "stripe", "--state-dir", str(tmp_path / "s"), "--write-config", str(tmp_path / "c.toml"),
                "--org-state-dir", str(tmp_path / "nothing"))
    assert empty.exit_code == 2 and "no org sandbox has run with this --state-dir" in said(empty)
    assert not (tmp_path / "c.toml").exists()


def test_patch_updates_part_of_a_setting_on_both_sandboxes(sandbox_org: SandboxOrg,
                                                           stripe_sandbox: StripeSandbox) -> None:
    url, ca = sandbox_org.instance_url, str(sandbox_org.ca_file)
    before = sandbox_org.counters()["api_usage"]["max"]
    patched = cli("sandbox", "control", url, "limits", '{"used": 7}', "--method", "PATCH", "--ca-file", ca)
    assert patched.exit_code == 0, patched.output
    assert sandbox_org.counters()["api_usage"] == {"used": 7, "max": before}
    unlinked = cli("sandbox", "control", url, "billing", '{"account": "acct_1"}', "--method", "PATCH", "--ca-file", ca)
    assert unlinked.exit_code == 2 and "not linked" in said(unlinked)

    fee = cli("sandbox", "control", stripe_sandbox.api_base, "settings", '{"fee_percent": "3.4"}', "--method", "PATCH")
    assert fee.exit_code == 0, fee.output
    assert json.loads(fee.stdout)["fee_percent"] == "3.4" and json.loads(fee.stdout)["fee_fixed_cents"] == 30
    assert stripe_sandbox.world.settings.fee_percent == Decimal("3.4")
    wrong = cli("sandbox", "control", stripe_sandbox.api_base, "settings", '{"fee": 1}', "--method", "PATCH")
    assert wrong.exit_code == 2 and "not a setting: fee" in said(wrong)


def test_state_dir_files_stay_owner_only_even_if_loosened(tmp_path: Path) -> None:
    from gtm_sandbox.statedir import StateDir

    loose = tmp_path / "state"
    loose.mkdir(mode=0o755)
    (loose / "api_key").write_text("sk_test_old")
    os.chmod(loose / "api_key", 0o644)
    state = StateDir.open(loose)
    state.write_secret("api_key", "sk_test_new")
    owner_only(loose)


def test_patch_on_one_orders_billing_knobs_lets_a_skipped_order_be_invoiced(
        sandbox_org: SandboxOrg, stripe_sandbox: StripeSandbox) -> None:
    url, ca, order = sandbox_org.instance_url, str(sandbox_org.ca_file), sandbox_org.demo_ids["acme_order"]
    sandbox_org.billing_fault("skip", order_id=order)
    sandbox_org.billing_fault("late", order_id=order, days=3)
    linked = sandbox_org.link_stripe(stripe_sandbox.api_base, stripe_sandbox.api_key)
    assert not linked.issued and "skip" in linked.problems[order]

    knobs = cli("sandbox", "control", url, f"billing/faults/{order}", '{"skip": false, "late_days": 0}',
                "--method", "PATCH", "--ca-file", ca)
    assert knobs.exit_code == 0, knobs.output
    assert json.loads(knobs.stdout) == {"skip": False, "wrong_amount": None, "late_days": 0, "invoices": None}
    ran = cli("sandbox", "control", url, "billing/run", "--method", "POST", "--ca-file", ca)
    assert [i["order_id"] for i in json.loads(ran.stdout)["issued"]] == [order]

    wrong = cli("sandbox", "control", url, f"billing/faults/{order}", '{"skp": true}', "--method", "PATCH",
                "--ca-file", ca)
    assert wrong.exit_code == 2 and "not an order's billing knob: skp" in said(wrong)
