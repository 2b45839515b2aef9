"""`gtm-connector sandbox org` (alias: the older `sandbox serve`): run the Salesforce sandbox
org standalone, as `sandbox stripe` runs the Stripe one.

Prints a ready ``[salesforce]`` config snippet (or, with ``--json``, one JSON line with the
connection facts once the server is ready) and serves until SIGTERM or Ctrl-C.

With ``--state-dir DIR`` the org is the same org after a restart: its CA, the connected
app's credentials (client id and secret, password, JWT key), its port and its records are
kept in DIR (0700, files 0600), the records saved on a clean stop and within
``--save-every`` seconds of a change (so a kill loses little), and restored at start.
``--write-config FILE`` (with the Stripe sandbox's ``--stripe-state-dir``) writes a whole
org config for both sandboxes (see ``sandbox_config.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from gtm_sandbox.cli.sandbox import sandbox_app, stop_on_signals
from gtm_sandbox.cli.sandbox_config import STRIPE_KEYS, plan_write_config, write_config
from gtm_sandbox.statedir import CONNECTION_FILE, Autosaver, StateDir

DATA_FILE = "org-data.json"


def _parse_data(value: str) -> str | int | None:
    value = value.strip().lower()
    if value in ("none", "empty", ""):
        return None
    if value == "demo":
        return "demo"
    if value.isdigit():
        return int(value)
    raise typer.BadParameter("use 'demo', a number of generated records, or 'none'", param_hint="--data")


def config_snippet(org: object) -> str:
    info = org.connection_info()  # type: ignore[attr-defined]
    secret_file = org.workdir / "client_secret"  # type: ignore[attr-defined]
    secret_file.touch(mode=0o600)
    secret_file.write_text(info["client_secret"])
    return "\n".join([
        f"# Sandbox org ready at {info['instance_url']} (org id {info['org_id']}).",
        "# Paste into an org config file; the org section needs: org_id = " + json.dumps(info["org_id"]),
        "[salesforce]",
        f"login_url = {json.dumps(info['login_url'])}",
        f"api_version = {json.dumps(info['api_version'])}",
        f"ca_bundle = {json.dumps(info['ca_file'])}",
        "",
        "[salesforce.auth]",
        'kind = "client_credentials"',
        f"client_id = {json.dumps(info['client_id'])}",
        f"client_secret = {{ file = {json.dumps(str(secret_file))} }}",
    ])


def _fingerprint(org: Any) -> object:
    """Cheap, and moves when the org's records (writes, purges, a reset), clock or billing
    memory do."""
    data = org.data
    with data.lock:
        tables = tuple((name, len(t.rows)) for name, t in data.tables.items())
    billing = json.dumps(org.billing.state(), sort_keys=True, default=str)
    return id(data), data.writes, tables, data.clock.offset.total_seconds(), billing


def _identity(state: StateDir | None) -> Any:
    """The state dir's saved identity, made and saved on the first run; None without a dir."""
    from gtm_sandbox.org.identity import OrgIdentity

    if state is None:
        return None
    try:
        identity = OrgIdentity.load(state)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--state-dir") from None
    if identity is None:
        identity = OrgIdentity.new()
        identity.save(state)
    return identity


def _start(state: StateDir | None, port: int | None, dataset: str | int | None, batch_size: int) -> Any:
    from gtm_sandbox.org import SandboxOrg

    chosen, saved = state.port(port) if state is not None else (port or 0, False)
    restoring = state is not None and state.has(DATA_FILE)
    try:
        org = SandboxOrg.start(data=None if restoring else dataset, batch_size=batch_size, port=chosen,
                               workdir=state.path if state is not None else None, identity=_identity(state))
    except OSError as exc:
        if saved:
            where = state.path if state is not None else ""
            raise typer.BadParameter(f"cannot listen on 127.0.0.1:{chosen} (the port saved in {where}): "
                                     f"{exc.strerror}; free it, or pass --port 0 for another (configs written "
                                     "for the old port then need --write-config again)", param_hint="--port") from None
        raise typer.BadParameter(f"cannot listen on 127.0.0.1:{chosen}: {exc.strerror}", param_hint="--port") from None
    if state is not None and restoring:
        from gtm_sandbox.snapshot import SnapshotError

        try:
            org.restore(state.file(DATA_FILE))
        except SnapshotError as exc:
            org.stop()
            raise typer.BadParameter(f"cannot restore the org's data: {exc}", param_hint="--state-dir") from None
    return org


def _record_state(state: StateDir, org: Any) -> None:
    info = org.connection_info()
    state.update_settings(port=org.port)
    state.write_json(CONNECTION_FILE, {
        "login_url": info["login_url"], "instance_url": info["instance_url"], "api_version": info["api_version"],
        "ca_file": info["ca_file"], "client_id": info["client_id"], "org_id": info["org_id"],
        "username": info["username"], "client_secret_file": str(state.file("client_secret")),
        "password_file": str(state.file("password")), "private_key_file": info["private_key_file"],
    })
    state.tighten()


def serve(
    port: Annotated[int | None, typer.Option(help="TCP port on 127.0.0.1 (0 picks a free one; default: the one "
                                                  "saved in --state-dir, else a free one).")] = None,
    data: Annotated[str, typer.Option(help="Data set: 'demo', a number N of generated records, or 'none' "
                                           "(with --state-dir: the first run's; later runs restore theirs).")] = "demo",
    batch_size: Annotated[int, typer.Option(help="Records per query page (Salesforce's default is 2000).")] = 2000,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON line with the connection facts.")] = False,
    state_dir: Annotated[Path | None, typer.Option(
        "--state-dir", help="keep the CA, credentials, port and records here across restarts (made 0700)")] = None,
    save_every: Annotated[float, typer.Option(
        "--save-every", min=0.05, help="with --state-dir: seconds between checks for changes to save")] = 2.0,
    write_config_to: Annotated[Path | None, typer.Option(
        "--write-config", help="write a ready org config for this org and the Stripe sandbox of "
                               "--stripe-state-dir")] = None,
    stripe_state_dir: Annotated[Path | None, typer.Option(
        "--stripe-state-dir", help="the Stripe sandbox's --state-dir (for --write-config)")] = None,
    alias: Annotated[str, typer.Option("--alias", help="the org alias in the written config")] = "sandbox",
    force: Annotated[bool, typer.Option("--force", help="let --write-config overwrite an existing file")] = False,
) -> None:
    """Run the HTTPS Salesforce sandbox org until SIGTERM."""
    dataset = _parse_data(data)
    target, stripe = plan_write_config(write_config_to, state_dir, force, peer_dir=stripe_state_dir,
                                       option="--stripe-state-dir", command="stripe", keys=STRIPE_KEYS)
    state = StateDir.open(state_dir) if state_dir is not None else None
    with stop_on_signals() as stop:
        org = _start(state, port, dataset, batch_size)
        saver = None
        try:
            if state is not None:
                _record_state(state, org)
                saver = Autosaver(org.save, state.file(DATA_FILE), lambda: _fingerprint(org), save_every).start()
                if target is not None and stripe is not None:
                    write_config(target, state.read_json(CONNECTION_FILE), stripe, alias=alias)
            _announce(org, json_out, target)
            while not stop.wait(0.5):
                pass
        finally:
            if saver is not None:
                saver.stop()  # one last save of what changed
            org.stop()


def _announce(org: Any, json_out: bool, target: Path | None) -> None:
    if json_out:
        sys.stdout.write(json.dumps(org.connection_info()) + "\n")
    else:
        sys.stdout.write(config_snippet(org) + "\n")
        if target is not None:
            sys.stdout.write(f"# Wrote {target} (check it: gtm-connector config check {target})\n")
    sys.stdout.flush()

sandbox_app.command("org")(serve)
sandbox_app.command("serve", hidden=True)(serve)  # the old name, kept for scripts
