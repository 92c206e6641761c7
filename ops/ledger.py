"""Reading the ledger (the jobs table), and `python -m ops ledger retention`: how long it
keeps rows, as the target's app reads its settings, and what the last clean-up did.

The app's retention function deletes final job rows `JOB_RETENTION_DAYS` after their last
write and webhook-effect rows after `WEBHOOK_EFFECT_RETENTION_HOURS`, a bounded amount per
run, and records each run in the row PartitionKey `meta`, RowKey `retention`: `last_run_at`
(epoch seconds), `last_deleted`, `last_partition` (where the next run starts) and
`complete` (`shared.retention`).

    python -m ops ledger retention
    python -m ops ledger retention --json
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import time
from typing import Any

from ops import appsettings
from ops import target as tgt
from ops.text import ago, when
from shared.ledger import read_job
from shared.retention import META_PARTITION, META_ROW
from shared.settings import Settings

# The settings shown, with the Settings field that holds each and its unit.
RETENTION = {"JOB_RETENTION_DAYS": ("job_retention_days", "days"),
             "WEBHOOK_EFFECT_RETENTION_HOURS": ("webhook_effect_retention_hours", "hours")}


def plain(value: Any) -> Any:
    """A table value as JSON can carry it (Int64 and friends arrive wrapped)."""
    if hasattr(value, "edm_type") and hasattr(value, "value"):
        value = value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def no_table(target: tgt.Target) -> tgt.OpsError:
    t = target
    return tgt.OpsError(f"table {t.names.jobs_table_name} does not exist in {t.where}: no job "
                        "was processed there yet (or the table has another name: --table)", 3)


async def fetch(session: tgt.Session, key: str, *, table_required: bool = True
                ) -> dict[str, Any] | None:
    """The job row for `key` (its partition, else the legacy one), None when there is none;
    no table yet is an error unless not `table_required` (then no row either)."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        entity = await read_job(session.table(), key)
    except ResourceNotFoundError as exc:
        if table_required and getattr(exc, "error_code", None) == "TableNotFound":
            raise no_table(session.target) from None
        return None
    return None if entity is None else {k: plain(v) for k, v in entity.items()}


async def meta_row(session: tgt.Session, name: str) -> dict[str, Any] | None:
    """A row of the ledger's `meta` partition, None when there is none."""
    from azure.core.exceptions import ResourceNotFoundError

    try:
        entity = await session.table().get_entity(META_PARTITION, name)
    except ResourceNotFoundError:  # no such row, or no table yet: no run either way
        return None
    return {k: plain(v) for k, v in entity.items()}


def add_parser(commands: Any) -> None:
    ledger = commands.add_parser("ledger", help="the ledger's retention",
                                 description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ledger.add_subparsers(dest="action", required=True, metavar="ACTION")
    r = sub.add_parser("retention", help="retention settings in force and the last run",
                       description=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--json", action="store_true", help="one JSON object")
    tgt.add_arguments(r)
    r.set_defaults(run=run_retention)


def settings_in_force(target: tgt.Target) -> tuple[dict[str, tuple[float, str]], str]:
    """Each retention setting's value and where it comes from, and whose settings."""
    app = appsettings.for_target(target)
    if app is None:
        settings = Settings(key_vault_url=None)
        about = (f"defaults: this checkout has no azd environment for {target.where} "
                 "(`az functionapp config appsettings list` shows the deployment's)")
        return {name: (float(getattr(settings, field)), appsettings.DEFAULT)
                for name, (field, _) in RETENTION.items()}, about
    settings = app.settings()
    return {name: (float(getattr(settings, field)), app.source(name))
            for name, (field, _) in RETENTION.items()}, app.about


def render(values: dict[str, tuple[float, str]], about: str, row: dict[str, Any] | None,
           table: str, where: str, now: float) -> str:
    lines = [f"Retention in table {table} ({where}), as {about} reads it:"]
    width = max(map(len, RETENTION)) + 2
    for name, (value, source) in values.items():
        lines.append(f"  {name:<{width}}{value:<8g}{source}")
    days = values["JOB_RETENTION_DAYS"][0]
    hours = values["WEBHOOK_EFFECT_RETENTION_HOURS"][0]
    lines.append(f"Final job rows are deleted {days:g} days after their last write, "
                 f"webhook-effect rows after {hours:g} hours; a row not final is kept.")
    if row is None:
        lines.append("Last run: no retention run yet.")
        return "\n".join(lines)
    at = row.get("last_run_at")
    stamp = f"{when(at)} ({ago(at, now)})" if isinstance(at, (int, float)) else "at an unknown time"
    state = ("complete" if row.get("complete") else
             "not complete (it stops after a bounded amount of work): the next run picks up "
             f"at partition {row.get('last_partition') or '?'}")
    lines.append(f"Last run: {stamp}: deleted {row.get('last_deleted', 0)} rows; {state}.")
    return "\n".join(lines)


async def run_retention(args: argparse.Namespace) -> int:
    target = tgt.resolve(args)
    values, about = settings_in_force(target)
    async with tgt.Session(target) as session:
        row = await meta_row(session, META_ROW)
    if args.json:
        print(json.dumps({"settings": {k: {"value": v, "source": s}
                                       for k, (v, s) in values.items()},
                          "about": about, "last_run": row}, ensure_ascii=False, sort_keys=True))
    else:
        print(render(values, about, row, target.names.jobs_table_name, target.where,
                     time.time()))
    return 0
