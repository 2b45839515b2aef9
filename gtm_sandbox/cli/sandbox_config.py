"""``--write-config FILE``: a ready org config for the two sandboxes, from their state
directories.

Each sandbox run with ``--state-dir`` leaves ``connection.json`` there once it is ready: the
non-secret facts a config needs (URLs, ids, the CA file, and the paths of the files holding
the secrets). Whichever sandbox starts second writes the config from its own facts and the
other's state directory (``sandbox org --stripe-state-dir`` or ``sandbox stripe
--org-state-dir``), secrets as ``{ file = … }``, so ``gtm-connector config check FILE``
passes and the file keeps working across restarts (same port, CA, credentials).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import typer

from gtm_sandbox.statedir import CONNECTION_FILE, StateDir

ORG_KEYS = ("login_url", "api_version", "ca_file", "client_id", "client_secret_file", "org_id")
STRIPE_KEYS = ("api_base", "api_key_file")


def plan_write_config(target: Path | None, state_dir: Path | None, force: bool, *, peer_dir: Path | None,
                      option: str, command: str, keys: tuple[str, ...]) -> tuple[Path | None, dict[str, Any] | None]:
    """Checks for ``--write-config`` before the sandbox starts: (the file to write, the other
    sandbox's connection facts), or (None, None) without it."""
    if target is None:
        return None, None
    if state_dir is None:
        raise typer.BadParameter("needs --state-dir: the config points at the secrets kept there",
                                 param_hint="--write-config")
    return check_target(target, force), peer_facts(peer_dir, option=option, command=command, keys=keys)


def check_target(path: Path, force: bool) -> Path:
    """Refuse (a usage error, before anything starts) to overwrite a file without ``--force``."""
    path = Path(path).expanduser().resolve()
    if path.exists() and not force:
        raise typer.BadParameter(f"{path} exists; pass --force to overwrite it", param_hint="--write-config")
    if not path.parent.is_dir():
        raise typer.BadParameter(f"{path.parent} is not a directory", param_hint="--write-config")
    return path


def peer_facts(state_dir: Path | None, *, option: str, command: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """The other sandbox's ``connection.json``; a usage error naming what to run first."""
    if state_dir is None:
        raise typer.BadParameter(f"--write-config needs {option} too: a config needs both sandboxes; start "
                                 f"`gtm-connector sandbox {command} --state-dir DIR` and pass {option} DIR",
                                 param_hint=option)
    path = Path(state_dir).expanduser().resolve()
    try:
        facts = StateDir(path).read_json(CONNECTION_FILE)
    except (OSError, ValueError):
        facts = {}
    missing = [k for k in keys if not facts.get(k)]
    if missing:
        raise typer.BadParameter(f"{path}: no {command} sandbox has run with this --state-dir yet "
                                 f"(no {CONNECTION_FILE}); start `gtm-connector sandbox {command} --state-dir {path}`",
                                 param_hint=option)
    return facts


def config_text(org: dict[str, Any], stripe: dict[str, Any], *, alias: str) -> str:
    q = json.dumps
    lines = [
        "# The local sandboxes, written by `gtm-connector sandbox … --write-config`.",
        "# Secrets are read from the sandboxes' state directories; restart the sandboxes with the",
        "# same --state-dir and this file keeps working. Check it: gtm-connector config check FILE",
        'mapping = "gtm-v2"',
        "",
        "[org]",
        f"alias = {q(alias)}",
        f"org_id = {q(org['org_id'])}",
        "",
        "[salesforce]",
        f"login_url = {q(org['login_url'])}",
        f"api_version = {q(org['api_version'])}",
        f"ca_bundle = {q(org['ca_file'])}",
        "",
        "[salesforce.auth]",
        'kind = "client_credentials"',
        f"client_id = {q(org['client_id'])}",
        f"client_secret = {{ file = {q(org['client_secret_file'])} }}",
        "",
        "[stripe]",
        f"api_base = {q(stripe['api_base'])}",
        f"api_key = {{ file = {q(stripe['api_key_file'])} }}",
    ]
    if stripe.get("webhook_secret_file"):
        lines.append(f"webhook_secret = {{ file = {q(stripe['webhook_secret_file'])} }}")
    lines += [
        "",
        "[invoicing]",
        'issuer = "salesforce"   # the sandbox org plays the GTM app\'s billing once linked to the Stripe sandbox',
        "",
    ]
    return "\n".join(lines)


def write_config(path: Path, org: dict[str, Any], stripe: dict[str, Any], *, alias: str) -> None:
    """Write the file (atomically; it holds no secret, only their paths)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(config_text(org, stripe, alias=alias), "utf-8")
    os.replace(tmp, path)
