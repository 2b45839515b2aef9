"""`gtm-connector writeback [--dry-run]`, `gtm-connector replay` and `gtm-connector dead-letters`.

    gtm-connector writeback --org acme --dry-run     # the field-level diff it would write
    gtm-connector replay --org acme --id 12 --id 13  # or --all; --dry-run lists only
    gtm-connector dead-letters --json
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from connector.entrypoints.cli._common import (
    EXIT_STOPPED,
    ConfigDirOpt,
    ConfigOpt,
    DryRunOpt,
    JsonOpt,
    OrgOpt,
    Orgs,
    make_console,
    styled,
)
from connector.entrypoints.cli._output import emit_json, emit_orgs, make_table, print_table
from connector.entrypoints.cli.payouts_cmd import run_org_job


def _text(value: Any) -> str:
    if value is None:
        return "∅"
    return str(value)


def writeback(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Upsert each order's results into the org's write-back object (only what changed).

    --dry-run prints the field-level diff per order and writes nothing (not even to the
    local model). Exit 1 if a run failed."""
    if not dry_run:
        orgs, outcomes = run_org_job("writeback", config, org, config_dir, dry_run=False, as_json=as_json)
        orgs.exit(any(o.status == "failed" for o in outcomes))
    from connector.services.writeback import plan

    orgs = Orgs(config, org, config_dir)
    plans = [(runtime.alias, plan(runtime)) for runtime in orgs]
    if not orgs.opened:
        orgs.exit()
    if as_json:
        emit_orgs([{
            "org": alias, "dry_run": True, "sobject": p.target.sobject, "external_id": p.target.external_id,
            "unchanged": p.unchanged, "awaiting_replay": p.awaiting_replay,
            "rows": [{"order_id": r.order_id,
                      "changes": [{"field": f, "old": _json(o), "new": _json(n)} for f, o, n in r.changes()]}
                     for r in p.to_send]} for alias, p in plans])
        orgs.exit()
    console = make_console()
    for alias, p in plans:
        table = make_table("order", "field", "now in the org", "would write",
                           title=f"{alias}: write-back to {p.target.sobject} by {p.target.external_id} (dry run)",
                           keys=("order", "field"))
        for row in p.to_send:
            for i, (name, old, new) in enumerate(row.changes()):
                table.add_row(row.order_id if i == 0 else "", name, _text(_json(old)) if row.previous else "(new)",
                              _text(_json(new)))
        print_table(console, table)
        console.print(f"{len(p.to_send)} record(s) would be written; {p.unchanged} unchanged; "
                      f"{p.awaiting_replay} waiting for replay. Nothing was written.")
    orgs.exit()


def _json(value: Any) -> Any:
    from connector.services.writeback import _plain

    return _plain(value)


def replay_command(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    ids: Annotated[list[int] | None, typer.Option("--id", help="dead letter id (repeat for several)")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every open dead letter of the selected org(s)")] = False,
    dry_run: DryRunOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-send dead letters after their cause is fixed; those that now go through are resolved.

    Exit 1 if any letter is still failing, 2 if an --id names no open letter of the
    selected org(s), 4 if the org's API limit stopped the replay (the rest is left open)."""
    from connector.jobs import runner
    from connector.services.replay import replay

    if not ids and not all_:
        typer.echo("say which letters: --id N (repeatable) or --all", err=True)
        raise typer.Exit(2)
    if ids and all_:
        typer.echo("give --id or --all, not both", err=True)
        raise typer.Exit(2)
    reports = []
    closed: dict[int, Any] = {}  # asked-for ids that exist in a selected org but are resolved
    orgs = Orgs(config, org, config_dir)
    for runtime in orgs:
        log = runtime.logger("replay")
        reports.append(replay(runtime, ids=None if all_ else ids, dry_run=dry_run, log=log,
                              run_job=runner("replay")))
        closed.update(_resolved_letters(runtime, ids or []))
    if not orgs.opened:
        orgs.exit()
    items = [(r.org, i) for r in reports for i in r.items]
    missing = sorted(set(ids or []) - {i.letter_id for _, i in items})
    if as_json:
        emit_json({"dry_run": dry_run, "items": [
            {"org": org_alias, "id": i.letter_id, "source": i.source, "object": i.object_name,
             "record_id": i.record_id, "outcome": i.outcome, "detail": i.detail} for org_alias, i in items]})
    elif items or not missing:  # only unknown --id values: their errors below say it all
        table = make_table("org", "id", "source", "object", "record", "outcome", "detail",
                           title="replay (dry run)" if dry_run else "replay", keys=("org", "id", "object", "record"))
        for org_alias, i in items:
            style = {"resolved": "green", "still failing": "red"}.get(i.outcome, "")
            table.add_row(org_alias, str(i.letter_id), i.source, i.object_name, i.record_id,
                          styled(i.outcome, style), i.detail)
        print_table(make_console(), table, empty="no open dead letters matched")
    for letter_id in missing:
        if letter_id in closed:
            when = closed[letter_id].resolved_at
            at = f" at {when.strftime('%Y-%m-%d %H:%M')} UTC" if when else ""
            typer.echo(f"dead letter {letter_id}: already resolved{at}; nothing to replay", err=True)
        else:
            scope = "the selected org" if len(orgs.configs) == 1 else "the selected orgs"
            typer.echo(f"dead letter {letter_id}: no such letter in {scope} "
                       "(`gtm-connector dead-letters` lists the open ones)", err=True)
            orgs.note(2)
    if any(r.stopped_early for r in reports):
        orgs.note(EXIT_STOPPED)
    orgs.exit(any(i.outcome == "still failing" for _, i in items))


def _resolved_letters(runtime: Any, ids: list[int]) -> dict[int, Any]:
    """The letters among ``ids`` that belong to this org and are already resolved."""
    out = {}
    with runtime.uow() as uow:
        for letter_id in ids:
            letter = uow.dead_letters.get(letter_id)
            if letter is not None and letter.org_id == runtime.org_id and letter.resolved_at is not None:
                out[letter_id] = letter
    return out


def dead_letters(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    source: Annotated[str | None, typer.Option(
        "--source", help="mirror, offers_push, invoicing, payouts, writeback (or the job or command: "
                         "sync, reconcile, invoice …)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """List open dead letters with their reasons."""
    from connector.jobs import UnknownName, dead_letter_source

    if source is not None:
        try:
            source = dead_letter_source(source)
        except UnknownName as exc:
            raise typer.BadParameter(str(exc), param_hint="--source") from None
    letters = []
    orgs = Orgs(config, org, config_dir, local_only=True)
    for runtime in orgs:
        with runtime.uow() as uow:
            letters += [(runtime.alias, d) for d in uow.dead_letters.open(runtime.org_id, source)]
    if not orgs.opened:
        orgs.exit()
    if as_json:
        emit_json({"dead_letters": [
            {"org": alias, "id": d.id, "source": d.source, "object": d.object_name, "record_id": d.record_id,
             "code": d.error_code, "reason": d.reason, "attempts": d.attempts,
             "created_at": d.created_at.isoformat(), "updated_at": d.updated_at.isoformat()} for alias, d in letters]})
        orgs.exit()
    table = make_table("org", "id", "source", "object", "record", "code", "reason", "attempts", "since",
                       title="open dead letters", keys=("org", "id", "object", "record", "code", "since"),
                       amounts=("attempts",))
    for alias, d in letters:
        table.add_row(alias, str(d.id), d.source, d.object_name, d.record_id, d.error_code, d.reason,
                      str(d.attempts), d.created_at.strftime("%Y-%m-%d %H:%M"))
    print_table(make_console(), table)
    orgs.exit()


def register(app: typer.Typer) -> None:
    app.command("writeback")(writeback)
    app.command("replay")(replay_command)
    app.command("dead-letters")(dead_letters)
