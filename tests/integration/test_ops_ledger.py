"""`python -m ops ledger retention` on Azurite: the retention settings the target's app
reads, where each comes from, and what the last retention run recorded (issue 18)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from azure.data.tables import TableClient

from ops.text import ago, when
from tests.integration.ops_helpers import run, tool_env


@pytest.fixture
def env(storage_env: dict[str, str], monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> dict[str, str]:
    for name in ("JOB_RETENTION_DAYS", "WEBHOOK_EFFECT_RETENTION_HOURS"):
        monkeypatch.delenv(name, raising=False)
    return tool_env(storage_env, monkeypatch, tmp_path)


def test_before_any_run_the_defaults_and_no_run(env: dict[str, str],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ledger", "retention")  # no table yet, either
    where = env["AzureWebJobsStorage"].split("QueueEndpoint=http://")[1].split("/")[0]
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        f"Retention in table {env['JOBS_TABLE_NAME']} (Azurite on {where}), as the local app "
        "reads it:",
        "  JOB_RETENTION_DAYS              30      default",
        "  WEBHOOK_EFFECT_RETENTION_HOURS  48      default",
        "Final job rows are deleted 30 days after their last write, webhook-effect rows after "
        "48 hours; a row not final is kept.",
        "Last run: no retention run yet."]


def test_the_values_in_force_and_the_last_run(env: dict[str, str], tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    settings = tmp_path / "local.settings.json"
    settings.write_text(json.dumps({"Values": {"WEBHOOK_EFFECT_RETENTION_HOURS": "24"}}))
    monkeypatch.setenv("LOCAL_SETTINGS_FILE", str(settings))
    monkeypatch.setenv("JOB_RETENTION_DAYS", "7.5")
    table = TableClient.from_connection_string(env["AzureWebJobsStorage"],
                                               env["JOBS_TABLE_NAME"])
    table.create_table()
    at = time.time() - 600
    table.upsert_entity({"PartitionKey": "meta", "RowKey": "retention", "last_run_at": at,
                         "last_deleted": 120, "last_partition": "job-1f", "complete": False})
    code, out, _ = run(capsys, "ledger", "retention")
    assert code == 0 and out.splitlines()[1:] == [
        "  JOB_RETENTION_DAYS              7.5     environment",
        f"  WEBHOOK_EFFECT_RETENTION_HOURS  24      {settings}",
        "Final job rows are deleted 7.5 days after their last write, webhook-effect rows after "
        "24 hours; a row not final is kept.",
        f"Last run: {when(at)} ({ago(at, time.time())}): deleted 120 rows; not complete (it "
        "stops after a bounded amount of work): the next run picks up at partition job-1f."]

    table.upsert_entity({"PartitionKey": "meta", "RowKey": "retention", "last_run_at": at,
                         "last_deleted": 3, "last_partition": "", "complete": True})
    code, out, _ = run(capsys, "ledger", "retention", "--json")
    doc = json.loads(out)
    assert code == 0 and doc.pop("last_run").items() >= {
        "last_run_at": at, "last_deleted": 3, "complete": True}.items()
    assert doc == {"about": "the local app", "settings": {
        "JOB_RETENTION_DAYS": {"value": 7.5, "source": "environment"},
        "WEBHOOK_EFFECT_RETENTION_HOURS": {"value": 24.0, "source": str(settings)}}}


def test_a_setting_the_app_would_refuse_is_one_line(env: dict[str, str],
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("JOB_RETENTION_DAYS", "soon")
    code, out, err = run(capsys, "ledger", "retention")
    assert (code, out) == (2, "")
    assert err == ("python -m ops ledger: the settings of the local app do not load: "
                   "JOB_RETENTION_DAYS must be a number of days; got 'soon'.\n")
