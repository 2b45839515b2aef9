"""`gtm-connector offers push` (send draft offer files to the org) and
`gtm-connector offers create` (write a validated draft file, optionally push it;
``offer create`` is kept as an alias).

Draft files live in the org's drafts directory (``offers/<alias>/`` by default, or
``[offers] drafts_dir``); see ``connector.services.offers_push`` for the format.
"""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from connector.entrypoints.cli._common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STOPPED,
    ConfigDirOpt,
    ConfigOpt,
    DryRunOpt,
    JsonOpt,
    OrgOpt,
    Orgs,
    make_console,
    open_runtime,
    select_one,
    styled,
)
from connector.entrypoints.cli._output import emit_orgs, make_table, print_table

offers_app = typer.Typer(help="Offers as code: author draft offer files and push them to the org.",
                         no_args_is_help=True)
# The old spelling `offer create`, kept so scripts keep working; not shown in --help.
offer_app = typer.Typer(help="Alias of `offers` (author one draft offer).", no_args_is_help=True)
NOT_PUSHED = {"invalid", "rejected", "conflict", "refused", "gone", "unsure"}


@offers_app.command("push")
def push(
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
    dry_run: DryRunOpt = False,
    force: Annotated[bool, typer.Option("--force", help="overwrite changes made in the org to a Draft offer")] = False,
    only: Annotated[list[str] | None, typer.Option("--only", help="draft key(s) to push")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create or update the draft offers of each org; offers that left Draft are never written."""
    failed = False
    docs = []
    orgs = Orgs(config, org, config_dir)
    for runtime in orgs:
        one_failed, doc = _push_one(runtime, dry_run=dry_run, force=force, only=only, as_json=as_json)
        failed |= one_failed
        docs.append(doc)
    if as_json:
        emit_orgs(docs)
    orgs.exit(failed)


def _push_one(runtime: Any, *, dry_run: bool, force: bool, only: list[str] | None,
              as_json: bool) -> tuple[bool, dict[str, Any]]:
    from connector.entrypoints.daemon import default_instance_id
    from connector.jobs import run_job
    from connector.services.offers_push import build_offers_push

    holder: dict[str, Any] = {}

    def job(rt: Any, *, log: Any, dry_run: bool = False) -> dict[str, int]:
        report = build_offers_push(rt, log=log).push(dry_run=dry_run, only=only, force=force)
        holder["report"] = report
        return report.counts()

    outcome = run_job(runtime, "offers_push", instance_id=default_instance_id(), dry_run=dry_run,
                      registry={"offers_push": job})
    results = holder["report"].results if "report" in holder else []
    doc = {"org": outcome.org, "status": outcome.status, "error": outcome.error, "dry_run": dry_run,
           "drafts": [dict(r.__dict__) for r in results]}
    if not as_json:
        console = make_console()
        table = make_table("draft", "result", "offer id", "detail",
                           title=f"{runtime.alias}: offers push{' (dry run)' if dry_run else ''} "
                                 f"from {runtime.config.offers.drafts_dir}", keys=("draft", "offer id"))
        for r in results:
            style = "red" if r.action in NOT_PUSHED else None
            table.add_row(r.key, styled(r.action, style), r.sf_id or "-", r.message)
        print_table(console, table, empty=f"{runtime.alias}: no draft files in {runtime.config.offers.drafts_dir}")
        if outcome.error:
            console.print(outcome.error, style="red")
    return outcome.status == "failed" or any(r.action in NOT_PUSHED for r in results), doc


def _parse_item(text: str) -> dict[str, Any]:
    parts = text.rsplit(":", 2)
    if len(parts) != 3:
        raise typer.BadParameter(f"{text!r}: use PRODUCT:QUANTITY:UNIT_PRICE_PER_MONTH, e.g. 'Core App:10:50.00'",
                                 param_hint="--item")
    product, quantity, price = parts
    if not quantity.strip().lstrip("-").isdigit():
        raise typer.BadParameter(f"{text!r}: quantity {quantity!r} is not a whole number", param_hint="--item")
    return {"product": product.strip(), "quantity": int(quantity), "unit_price_per_month": price.strip()}


# Draft keys as `offer create` spells them, so that a problem names what the operator typed.
OPTION_OF = {"customer_name": "--customer", "customer_org_id": "--customer-org-id", "offer_type": "--type",
             "service_start_date": "--start", "service_end_date": "--start", "valid_until": "--valid-until",
             "recipient_email": "--recipient", "billing_email": "--billing", "initial_order_id": "--initial-order",
             "partner_po_number": "--partner-po", "customer_po_number": "--customer-po", "(file name)": "--key"}


def _as_option(problem: str, path: Path, items: list[str]) -> str:
    """``<path>: key: message`` from the draft validator -> ``key: message (--option 'value')``:
    the file is not written yet, the options are what to fix."""
    text = problem.removeprefix(f"{path}: ")
    key = text.split(":", 1)[0]
    found = re.fullmatch(r"items\[(\d+)\].*", key)
    if found and int(found.group(1)) < len(items):
        return f"{text} (--item {items[int(found.group(1))]!r})"
    option = OPTION_OF.get(key)
    return f"{text} ({option})" if option else text


@offers_app.command("create")
def create(
    customer: Annotated[str, typer.Option("--customer", help="customer name")],
    customer_org_id: Annotated[str, typer.Option("--customer-org-id", help="the customer's Salesforce org id")],
    start: Annotated[str, typer.Option("--start", help="service start date YYYY-MM-DD")],
    valid_until: Annotated[str, typer.Option("--valid-until", help="offer valid until YYYY-MM-DD")],
    recipient: Annotated[str, typer.Option("--recipient", help="offer recipient email")],
    item: Annotated[list[str], typer.Option("--item", help="PRODUCT:QUANTITY:UNIT_PRICE_PER_MONTH (repeat)")],
    offer_type: Annotated[str, typer.Option("--type", help="initial or add_on")] = "initial",
    billing: Annotated[str | None, typer.Option("--billing", help="billing email (gets the invoice)")] = None,
    initial_order: Annotated[str | None, typer.Option("--initial-order", help="add-on: the initial order id")] = None,
    partner_po: Annotated[str | None, typer.Option("--partner-po")] = None,
    customer_po: Annotated[str | None, typer.Option("--customer-po")] = None,
    key: Annotated[str | None, typer.Option(
        "--key", help="draft key (file name); default from customer and start")] = None,
    push_now: Annotated[bool, typer.Option("--push", help="push the draft to the org right away")] = False,
    config: ConfigOpt = None,
    org: OrgOpt = None,
    config_dir: ConfigDirOpt = Path("config"),
) -> None:
    """Write a draft offer file after validating it against the mirrored catalog.

    Exit 1 if the offer is invalid (every problem is listed with its option; nothing is
    written), 2 for a malformed option or an existing draft key."""
    from connector.services.offers_push import Catalog, draft_toml, validate_draft

    cfg = select_one(config, org, config_dir)
    content: dict[str, Any] = {
        "customer_name": customer, "customer_org_id": customer_org_id, "offer_type": offer_type,
        "service_start_date": start, "valid_until": valid_until, "recipient_email": recipient,
        "billing_email": billing, "initial_order_id": initial_order, "partner_po_number": partner_po,
        "customer_po_number": customer_po, "items": [_parse_item(i) for i in item],
    }
    for name in ("service_start_date", "valid_until"):
        try:
            content[name] = date.fromisoformat(content[name])
        except ValueError:
            option = "--start" if name == "service_start_date" else "--valid-until"
            raise typer.BadParameter(f"{content[name]!r} is not a date YYYY-MM-DD", param_hint=option) from None
    key = key or re.sub(r"[^a-z0-9]+", "-", f"{customer} {start}".lower()).strip("-")
    runtime = open_runtime(cfg)
    try:
        configured = runtime.config.offers.drafts_dir
        assert configured is not None  # OrgConfig fills in the default
        drafts_dir = Path(configured)
        path = drafts_dir / f"{key}.toml"
        if path.exists():
            typer.echo(f"{path}: a draft with key {key!r} exists already (edit it, or pass another --key)", err=True)
            raise typer.Exit(2)
        catalog = Catalog(runtime.uow, runtime.org_id, runtime.mapping)
        _, problems = validate_draft(key, path, {k: v for k, v in content.items() if v is not None}, catalog,
                                     runtime.clock().date())
        if problems:
            typer.echo(f"offer {key!r} not written: {len(problems)} problem(s)", err=True)
            for problem in problems:
                typer.echo("  " + _as_option(problem, path, item), err=True)
            raise typer.Exit(1)
        drafts_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(draft_toml({k: v for k, v in content.items() if v is not None}))
        typer.echo(f"wrote {path}")
        if push_now:
            from connector.jobs import observe_outcomes

            stopped: list[bool] = []
            with observe_outcomes(lambda o: stopped.append(o.status == "stopped")):
                failed, _ = _push_one(runtime, dry_run=False, force=False, only=[key], as_json=False)
            raise typer.Exit(EXIT_FAILED if failed else EXIT_STOPPED if any(stopped) else EXIT_OK)
    finally:
        runtime.close()


offer_app.command("create", help=create.__doc__)(create)


def register(app: typer.Typer) -> None:
    app.add_typer(offers_app, name="offers")
    app.add_typer(offer_app, name="offer", hidden=True)
