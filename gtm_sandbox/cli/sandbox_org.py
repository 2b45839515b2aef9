"""`gtm-connector sandbox org` (alias: the older `sandbox serve`): run the Salesforce sandbox
org standalone, as `sandbox stripe` runs the Stripe one.

Prints a ready ``[salesforce]`` config snippet (or, with ``--json``, one JSON line with the
connection facts once the server is ready) and serves until SIGTERM or Ctrl-C."""

from __future__ import annotations

import json
import signal
import sys
import threading
from types import FrameType

import typer

from gtm_sandbox.cli.sandbox import sandbox_app


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


def serve(
    port: int = typer.Option(0, help="TCP port on 127.0.0.1 (0 picks a free one)."),
    data: str = typer.Option("demo", help="Data set: 'demo', a number N of generated records, or 'none'."),
    batch_size: int = typer.Option(2000, help="Records per query page (Salesforce's default is 2000)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON line with the connection facts."),
) -> None:
    """Run the HTTPS Salesforce sandbox org until SIGTERM."""
    from gtm_sandbox.org import SandboxOrg

    dataset = _parse_data(data)
    stop = threading.Event()

    def _stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        started = SandboxOrg.start(data=dataset, batch_size=batch_size, port=port)
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}", param_hint="--port") from None
    with started as org:
        if json_out:
            sys.stdout.write(json.dumps(org.connection_info()) + "\n")
        else:
            sys.stdout.write(config_snippet(org) + "\n")
        sys.stdout.flush()
        while not stop.wait(0.5):
            pass


sandbox_app.command("org")(serve)
sandbox_app.command("serve", hidden=True)(serve)  # the old name, kept for scripts
