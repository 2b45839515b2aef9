"""`gtm-connector mapping check` (the org's mapping against the org's own describe, online)
and `gtm-connector mapping draft` (a mapping folder written from the org's describe).

``check`` fetches every mapped object's describe in one ``/composite`` call and prints one
line per problem (object, field, what is wrong, the closest names the org has); exit 2 when
there is an error (warnings alone exit 0). ``draft`` starts from the shipped gtm-v2 and puts
in the org's names, so that ``check`` passes on it against the same org; it never writes
into a non-empty folder without ``--force``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from connector.entrypoints.cli._common import (
    EXIT_OK,
    EXIT_USAGE,
    ConfigDirOpt,
    ConfigOpt,
    JsonOpt,
    OrgOpt,
    Orgs,
    open_runtime,
    select_one,
)
from connector.entrypoints.cli._output import emit_orgs, make_console, make_table, print_table, styled

mapping_app = typer.Typer(help="Check the mapping against the org's describe, or draft one from it.",
                          no_args_is_help=True)


@mapping_app.command("check")
def check(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    as_json: JsonOpt = False,
) -> None:
    """Check each org's mapping against the org's describe now (one API call per 25 objects)."""
    console = make_console()
    orgs = Orgs(config, org, config_dir)
    docs = []
    for runtime in orgs:
        result = runtime.mapping_guard().check(conditional=False)
        docs.append({"org": runtime.alias, "mapping": runtime.mapping.name,
                     "api_version": runtime.config.salesforce.api_version, "ok": result.ok,
                     "objects_checked": len(result.checked), "problems": [p.as_dict() for p in result.problems]})
        if not as_json:
            _print(console, runtime, result)
        if not result.ok:
            orgs.note(EXIT_USAGE)
    if as_json:
        emit_orgs(docs)
    orgs.exit()


def _print(console: Any, runtime: Any, result: Any) -> None:
    where = f"{runtime.alias}: mapping {runtime.mapping.name} at API v{runtime.config.salesforce.api_version}"
    if not result.problems:
        console.print(f"{where}: fits the org's describe ({len(result.checked)} objects checked)")
        return
    table = make_table("object", "field", "severity", "problem", title=where, keys=("object", "field", "severity"))
    for p in result.problems:
        table.add_row(p.sobject, p.field or "", styled(p.severity, "red" if p.severity == "error" else "yellow"),
                      p.message)
    print_table(console, table)
    verdict = (f"{len(result.errors)} error(s): the mirror will not run on this mapping"
               if result.errors else "warnings only: the mirror runs")
    console.print(verdict, style="red" if result.errors else "yellow")
    # One plain line per error as well, for logs and people who grep.
    for p in result.errors:
        typer.echo(f"{runtime.alias}: {p}", err=True)


@mapping_app.command("draft")
def draft(
    out: Annotated[Path, typer.Option("--out", help="folder to write mapping.toml, vocabularies.toml, writeback.toml")],
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    template: Annotated[str, typer.Option("--template", help="mapping set to start from")] = "gtm-v2",
    force: Annotated[bool, typer.Option("--force", help="overwrite the files of a non-empty --out")] = False,
) -> None:
    """Write a mapping folder from the org's describe (the shipped mapping with the org's names)."""
    from connector.mapping_draft import draft_files
    from connector.mappings import load_mapping

    refusal = (f"{out} is a file, not a folder" if out.exists() and not out.is_dir() else
               f"{out} is not empty; pick an empty folder or pass --force to overwrite its mapping files"
               if out.is_dir() and any(out.iterdir()) and not force else None)
    if refusal:  # before any call to the org: a partner's edited mapping is never overwritten by accident
        typer.echo(f"--out: {refusal}", err=True)
        raise typer.Exit(EXIT_USAGE)
    cfg = select_one(config, org, config_dir)
    base = load_mapping(template)
    runtime = open_runtime(cfg)
    try:
        gateway = runtime.salesforce()
        sobjects = [o.sobject for o in base.in_sync_order()] + [base.writeback.sobject]
        answers = gateway.describes(sobjects)
        describes = {name: (a.body if a.ok else None) for name, a in answers.items()}
        api_version = cfg.salesforce.api_version
        files = draft_files(base, describes, org=cfg.alias, api_version=api_version, version=out.name)
    finally:
        runtime.close()
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (out / name).write_text(text, "utf-8")
    missing = [n for n, d in describes.items() if d is None]
    # A template field the org has no counterpart for is left commented out: say which, the
    # partner decides (a required column such as Quantity matters to invoicing).
    left_out = [line.lstrip("# ").split(" =")[0] for line in files["mapping.toml"].splitlines()
                if "  # left out:" in line]
    typer.echo(f"{cfg.alias}: wrote {', '.join(files)} to {out} from the org's describe at API v{api_version}"
               + (f" (not in the org: {', '.join(missing)})" if missing else ""))
    if left_out:
        typer.echo(f"left out (no counterpart in the org; see the comments in mapping.toml): {', '.join(left_out)}")
    typer.echo(f"next: set mapping = \"{out.resolve()}\" in the org's config and run "
               f"`gtm-connector mapping check --org {cfg.alias}`")
    raise typer.Exit(EXIT_OK)


def register(app: typer.Typer) -> None:
    app.add_typer(mapping_app, name="mapping")
