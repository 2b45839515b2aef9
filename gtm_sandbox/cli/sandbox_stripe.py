"""`gtm-connector sandbox stripe [--port N] [--json]`: run the local Stripe server standalone.

With ``--json`` it prints one JSON line once it is ready (``api_base``, ``api_key``,
``platform_account``, and ``webhook_secret`` with ``--forward-to``) so a parent process can
read it, then serves until SIGTERM/SIGINT. Any ``sk_test_…`` (or restricted ``rk_test_…``)
key is accepted; the printed one is just a convenient default.

``--state-dir DIR`` keeps the sandbox the same across restarts: its key, port, platform
account and data (saved on a clean stop and within ``--save-every`` seconds of a change,
restored at start; 0700 directory, 0600 files). ``--forward-to URL`` works like ``stripe
listen --forward-to``: a webhook endpoint for the connector's events (or ``--events``) is
made at start and its ``whsec_…`` signing secret printed once (and kept in DIR, so it stays
the same). ``--write-config FILE --org-state-dir ORGDIR`` writes an org config for both
sandboxes (see ``sandbox_config.py``).
"""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer

from gtm_sandbox.cli.sandbox import sandbox_app, stop_on_signals
from gtm_sandbox.cli.sandbox_config import ORG_KEYS, plan_write_config, write_config
from gtm_sandbox.statedir import CONNECTION_FILE, Autosaver, StateDir
from gtm_sandbox.stripe import StripeSandbox
from gtm_sandbox.stripe.forward import CONNECTOR_EVENTS, ForwardError, check_url, forward

DATA_FILE, API_KEY, WEBHOOK_SECRET = "stripe-data.json", "api_key", "webhook_secret"


def _fingerprint(box: StripeSandbox) -> object:
    """Cheap, and moves when objects are created or events emitted (every change emits one)."""
    world = box.world
    with world.lock:
        return world.offset_s, tuple((acct_id, sum(len(objs) for objs in acct.objects.values()))
                                     for acct_id, acct in world.accounts.items())


def _events(value: str | None) -> tuple[str, ...]:
    if value is None:
        return CONNECTOR_EVENTS
    events = tuple(e.strip() for e in value.split(",") if e.strip())
    if not events:
        raise typer.BadParameter("name at least one event type, or '*'", param_hint="--events")
    return events


def _start(state: StateDir | None, port: int | None, fee: Decimal, fee_fixed_cents: int) -> StripeSandbox:
    chosen, saved = state.port(port) if state is not None else (port or 0, False)
    try:
        box = StripeSandbox.start(chosen, fee_percent=fee, fee_fixed_cents=fee_fixed_cents)
    except OSError as exc:
        hint = (f" (the port saved in {state.path}; free it, or pass --port 0 for another and write configs again)"
                if state is not None and saved else "")
        raise typer.BadParameter(f"cannot listen on 127.0.0.1:{chosen}: {exc.strerror}{hint}",
                                 param_hint="--port") from None
    if state is None:
        return box
    key = state.read_text(API_KEY)
    if key:
        box.api_key = key
    else:
        state.write_secret(API_KEY, box.api_key)
    if state.has(DATA_FILE):
        from gtm_sandbox.snapshot import SnapshotError

        try:
            box.restore(state.file(DATA_FILE))
        except SnapshotError as exc:
            box.stop()
            raise typer.BadParameter(f"cannot restore the Stripe sandbox's data: {exc}",
                                     param_hint="--state-dir") from None
    return box


def _forward(box: StripeSandbox, state: StateDir | None, url: str, events: tuple[str, ...]) -> str:
    secret = state.read_text(WEBHOOK_SECRET) if state is not None else None
    try:
        endpoint = forward(box, url, events, secret=secret or None)
    except ForwardError as exc:  # the caller stops the sandbox
        raise typer.BadParameter(str(exc), param_hint="--events") from None
    if state is not None and not secret:
        state.write_secret(WEBHOOK_SECRET, endpoint["secret"])
    return str(endpoint["secret"])


def _record_state(state: StateDir, box: StripeSandbox) -> None:
    state.update_settings(port=int(box.api_base.rsplit(":", 1)[1]))
    facts: dict[str, Any] = {"api_base": box.api_base, "platform_account": box.platform_account,
                             "api_key_file": str(state.file(API_KEY))}
    if state.has(WEBHOOK_SECRET):
        facts["webhook_secret_file"] = str(state.file(WEBHOOK_SECRET))
    state.write_json(CONNECTION_FILE, facts)
    state.tighten()


@sandbox_app.command("stripe")
def stripe_sandbox(
    port: Annotated[int | None, typer.Option(
        "--port", help="TCP port on 127.0.0.1 (0 = a free port; default: the one saved in --state-dir, "
                       "else a free one)")] = None,
    json_out: Annotated[bool, typer.Option(
        "--json", help="print one JSON line with api_base and api_key when ready")] = False,
    fee_percent: Annotated[str, typer.Option("--fee-percent", help="card fee percentage per charge")] = "2.9",
    fee_fixed_cents: Annotated[int, typer.Option(
        "--fee-fixed-cents", help="fixed card fee per charge, in cents")] = 30,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="keep the key, port, account and data here across restarts (made 0700)")] = None,
    save_every: Annotated[float, typer.Option(
        "--save-every", min=0.05, help="with --state-dir: seconds between checks for changes to save")] = 2.0,
    forward_to: Annotated[str | None, typer.Option(
        "--forward-to", help="deliver signed webhook events to this loopback URL (prints the whsec_ secret)")] = None,
    events: Annotated[str | None, typer.Option(
        "--events", help="with --forward-to: comma-separated event types, or '*' (default: the connector's)")] = None,
    write_config_to: Annotated[Path | None, typer.Option(
        "--write-config", help="write a ready org config for this sandbox and the org of --org-state-dir")] = None,
    org_state_dir: Annotated[Path | None, typer.Option(
        "--org-state-dir", help="the sandbox org's --state-dir (for --write-config)")] = None,
    alias: Annotated[str, typer.Option("--alias", help="the org alias in the written config")] = "sandbox",
    force: Annotated[bool, typer.Option("--force", help="let --write-config overwrite an existing file")] = False,
) -> None:
    """Serve Stripe's v1 API subset (customers, invoices, payouts, webhooks …) on 127.0.0.1."""
    try:
        fee = Decimal(fee_percent)
    except ArithmeticError:
        raise typer.BadParameter(f"{fee_percent!r} is not a number, e.g. 2.9", param_hint="--fee-percent") from None
    if forward_to is not None:
        try:
            check_url(forward_to)
        except ForwardError as exc:
            raise typer.BadParameter(str(exc), param_hint="--forward-to") from None
    wanted_events = _events(events)
    target, org = plan_write_config(write_config_to, state_dir, force, peer_dir=org_state_dir,
                                    option="--org-state-dir", command="org", keys=ORG_KEYS)
    state = StateDir.open(state_dir) if state_dir is not None else None
    with stop_on_signals() as stop:
        box = _start(state, port, fee, fee_fixed_cents)
        saver = None
        try:
            secret = _forward(box, state, forward_to, wanted_events) if forward_to is not None else None
            if state is not None:
                _record_state(state, box)
                saver = Autosaver(box.save, state.file(DATA_FILE), lambda: _fingerprint(box), save_every).start()
                if target is not None and org is not None:
                    write_config(target, org, state.read_json(CONNECTION_FILE), alias=alias)
            _announce(box, json_out, secret, forward_to, target)
            while not stop.wait(0.5):
                pass
        finally:
            if saver is not None:
                saver.stop()  # one last save of what changed
            box.stop()

def _announce(box: StripeSandbox, json_out: bool, secret: str | None, forward_to: str | None,
              target: Path | None) -> None:
    ready: dict[str, Any] = {"api_base": box.api_base, "api_key": box.api_key, "platform_account": box.platform_account}
    if secret is not None:
        ready["webhook_secret"] = secret
    if json_out:
        typer.echo(json.dumps(ready))
        return
    typer.echo(f"Stripe sandbox on {box.api_base} (platform account {box.platform_account}); "
               f"use any sk_test_ key, e.g. {box.api_key}. Control API: {box.api_base}/_sandbox/health. "
               "Ctrl-C to stop.")
    if secret is not None:
        typer.echo(f"Forwarding events to {forward_to}. Your webhook signing secret is {secret}")
    if target is not None:
        typer.echo(f"Wrote {target} (check it: gtm-connector config check {target})")
