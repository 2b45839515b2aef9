"""Shared option handling for commands that act on one or more orgs.

Every org command takes the same three ways to say which org(s): ``--config FILE`` (one or
more files), ``--org ALIAS`` (``<config-dir>/<alias>.toml``), or nothing (every org file in
``--config-dir``, default ``$GTM_CONFIG_DIR`` or ``config/``). Problems are printed as
``file: key: message`` and exit with code 2, like ``config check``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from connector.config import OrgConfig, load_config, load_config_dir
from connector.errors import ConfigError

ConfigOpt = Annotated[Optional[list[Path]], typer.Option("--config", "-c", help="org config file(s)")]
OrgOpt = Annotated[Optional[str], typer.Option("--org", help="org alias: <config-dir>/<alias>.toml")]
ConfigDirOpt = Annotated[
    Path, typer.Option("--config-dir", envvar="GTM_CONFIG_DIR", help="directory of org config files")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable JSON output")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="show what would be done; write nothing")]


def _fail(exc: ConfigError) -> typer.Exit:
    for file, key, msg in exc.problems or [("?", "?", str(exc))]:
        typer.echo(f"{file}: {key}: {msg}", err=True)
    return typer.Exit(2)


def select_configs(config: list[Path] | None, org: str | None, config_dir: Path | None = None) -> list[OrgConfig]:
    """Resolve the org options to validated configs (exit 2 with named problems)."""
    config_dir = config_dir or Path(os.environ.get("GTM_CONFIG_DIR", "config"))
    try:
        if config:
            return [load_config(p) for p in config]
        if org:
            path = config_dir / f"{org}.toml"
            if path.exists():
                return [load_config(path)]
            configs, _ = load_config_dir(config_dir)
            matches = [c for c in configs if c.alias == org]
            if not matches:
                problem = (str(config_dir), "org.alias", f"no config file for org {org!r}")
                raise ConfigError(problem[2], [problem])
            return matches
        configs, errors = load_config_dir(config_dir)
    except ConfigError as exc:
        raise _fail(exc) from None
    for error in errors:
        for file, key, msg in error.problems:
            typer.echo(f"{file}: {key}: {msg} (org skipped)", err=True)
    if not configs:
        typer.echo(f"{config_dir}: no valid org config files (use --config FILE or --org ALIAS)", err=True)
        raise typer.Exit(2)
    return configs


def select_one(config: list[Path] | None, org: str | None, config_dir: Path | None = None) -> OrgConfig:
    configs = select_configs(config, org, config_dir)
    if len(configs) != 1:
        typer.echo(f"this command acts on one org; {len(configs)} matched (use --org or --config)", err=True)
        raise typer.Exit(2)
    return configs[0]
