"""`gtm-connector sandbox control URL RESOURCE [BODY]`: steer a running sandbox from a shell.

Both sandboxes serve a small JSON control API under ``/_sandbox/`` (not part of the
Salesforce or Stripe API, not counted as API usage): fault injection, expired sessions,
lowered limits, latency, counters. This command is its client, so a person rehearsing an
outage needs no curl::

    gtm-connector sandbox control https://127.0.0.1:PORT faults '{"endpoint": "query", "status": 503}' --ca-file CA
    gtm-connector sandbox control https://127.0.0.1:PORT limits '{"max": 1000, "used": 990}' --ca-file CA
    gtm-connector sandbox control https://127.0.0.1:PORT limits '{"used": 0}' --method PATCH --ca-file CA
    gtm-connector sandbox control https://127.0.0.1:PORT sessions/expire --method POST --ca-file CA
    gtm-connector sandbox control http://127.0.0.1:PORT settings '{"fee_percent": "3.4"}' --method PATCH  # Stripe
    gtm-connector sandbox control http://127.0.0.1:PORT counters          # the Stripe sandbox

Resources: see ``gtm_sandbox.org.control`` and ``gtm_sandbox.stripe.server``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from gtm_sandbox.cli.sandbox import sandbox_app

LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
EXIT_FAILED, EXIT_USAGE = 1, 2  # the connector CLI's codes: failed, usage error


@sandbox_app.command("control")
def control(
    url: Annotated[str, typer.Argument(help="the sandbox's base URL (org instance URL or Stripe api_base)")],
    resource: Annotated[str, typer.Argument(help="control resource, e.g. faults, limits, counters, sessions/expire")],
    body: Annotated[str | None, typer.Argument(
        help="JSON body (sent with POST unless --method says otherwise)")] = None,
    method: Annotated[str | None, typer.Option(
        "--method", help="GET, POST, PATCH or DELETE (default: POST with a body, else GET)")] = None,
    ca_file: Annotated[Path | None, typer.Option("--ca-file", help="the org sandbox's CA file (HTTPS)")] = None,
) -> None:
    """Send one request to a running sandbox's control API and print the JSON answer."""
    import requests

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or parts.hostname not in LOOPBACK:
        raise typer.BadParameter(f"{url!r}: a sandbox runs on 127.0.0.1 or localhost (http or https)", param_hint="URL")
    payload: Any = None
    if body is not None:
        try:
            payload = json.loads(body)
        except json.JSONDecodeError as exc:
            raise typer.BadParameter(f"not JSON ({exc.msg} at column {exc.colno})", param_hint="BODY") from None
    verb = (method or ("POST" if body is not None else "GET")).upper()
    if verb not in ("GET", "POST", "PATCH", "DELETE"):
        raise typer.BadParameter(f"{method!r}: use GET, POST, PATCH or DELETE", param_hint="--method")
    target = f"{parts.scheme}://{parts.netloc}/_sandbox/{resource.strip('/')}"
    session = requests.Session()
    session.trust_env = False  # REQUESTS_CA_BUNDLE / proxies from the environment don't apply here
    try:
        resp = session.request(verb, target, json=payload if payload is not None or verb == "GET" else {}, timeout=10,
                               verify=str(ca_file) if ca_file else True)
    except requests.RequestException as exc:
        cause = _cause(exc)
        typer.echo(f"{target}: {cause}: is the sandbox running (and --ca-file its CA)?", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    text = resp.text.strip()
    if resp.status_code >= 400:
        typer.echo(f"{verb} {target}: HTTP {resp.status_code}: {text}", err=True)
        raise typer.Exit(EXIT_USAGE if resp.status_code in (400, 404) else EXIT_FAILED)
    typer.echo(text or json.dumps({"ok": True, "status": resp.status_code}))



def _cause(exc: Exception) -> str:
    """A short cause for a failed request to a sandbox (the sandbox is local: refused,
    timed out or a TLS problem cover what happens)."""
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS problem"
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return "connection refused" if "refused" in str(exc).lower() else "connection failed"
    return "request failed"
