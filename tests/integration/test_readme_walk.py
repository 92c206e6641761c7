"""Every example in README.md, walked end to end on `scripts/run-local` as a new user would
run it (no local.settings.json): read from the README itself, so an example added later
(a job kind, a twimlet, a command) is walked too.

- `sh` blocks: `.venv/bin/python -m ops ...` lines run as written and must succeed;
  lines with `<placeholders>` (a deployment's names) must parse with the tool's options;
  `az`/`azd`/`func azure`/`twilio` lines target Azure; anything else fails the walk.
- `json` blocks: every job is enqueued and must be sent; the call flow must be the one the
  local defaults run; events are outputs.
- the twimlet URLs (`/api/twiml/...`) must answer TwiML to a signed request.
- the commands the run-local banner suggests run too.
At the end nothing may be in -poison, and -rejected holds only what `--no-validate` sent.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from ops.__main__ import parser as ops_parser
from ops.localsettings import LOCAL_CALL_FLOW
from shared.callflow import CallFlow, CallFlowError
from tests.integration.run_local_helpers import READY, ROOT, Ports, RunLocal, local_env

README = ROOT / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
TWIMLET = re.compile(r"`(/api/twiml/[^`\s]+)`")
TOOL = re.compile(r"^(\.venv/bin/)?python -m ops\b")
AZURE = ("az ", "azd ", "func azure ", "twilio ")
HARNESS = ("scripts/run-local", "scripts/test")


@dataclass(frozen=True)
class Example:
    line: int  # in README.md
    kind: str  # run, template, azure, harness, job, call_flow, event, twimlet, unknown
    text: str
    doc: Any = None


def sh_lines(block: str) -> list[tuple[int, str]]:
    """Commands of an sh block: continuations joined, blank and comment lines left out."""
    out, current, start = [], "", 0
    for i, raw in enumerate(block.splitlines()):
        line = raw.rstrip()
        if not current:
            start = i
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip() and not current.strip().startswith("#"):
            out.append((start, current.strip()))
        current = ""
    return out


def command_kind(command: str) -> str:
    if command.startswith(HARNESS):
        return "harness"
    if command.startswith(AZURE):
        return "azure"
    if TOOL.match(command):
        return "template" if "<" in command else "run"
    return "unknown"


def json_docs(block: str) -> list[Any]:
    decoder, i, docs = json.JSONDecoder(), 0, []
    while i < len(block):
        if block[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(block, i)
        docs.append(doc)
    return docs


def doc_kind(doc: Any) -> str:
    if isinstance(doc, dict) and "event_id" in doc:
        return "event"
    try:
        CallFlow.parse(json.dumps(doc))
        return "call_flow"
    except CallFlowError:
        pass
    if isinstance(doc, dict) and "type" in doc and "to" in doc:
        return "job"
    return "unknown"


def examples(text: str) -> list[Example]:
    found = []
    for m in FENCE.finditer(text):
        language, body = m[1], m[2]
        first = text.count("\n", 0, m.start(2)) + 1
        if language == "sh":
            found += [Example(first + i, command_kind(c), c) for i, c in sh_lines(body)]
        elif language == "json":
            found += [Example(first, doc_kind(d), json.dumps(d), d) for d in json_docs(body)]
    for m in TWIMLET.finditer(text):
        found.append(Example(text.count("\n", 0, m.start()) + 1, "twimlet", m[1]))
    return sorted(found, key=lambda e: e.line)


def test_the_readme_parses_into_known_examples() -> None:
    found = examples(README.read_text())
    unknown = [f"README.md:{e.line}: {e.text}" for e in found if e.kind == "unknown"]
    assert unknown == [], "examples the walk does not know how to run"
    kinds = {e.kind for e in found}
    assert {"run", "template", "azure", "job", "call_flow", "twimlet"} <= kinds
    for e in found:
        if e.kind == "template":  # a deployment's names: the options must exist
            try:
                ops_parser().parse_args(shlex.split(e.text)[3:])
            except SystemExit:
                pytest.fail(f"README.md:{e.line}: {e.text} does not parse")
        if e.kind == "call_flow":  # what the README shows is what runs locally
            assert e.doc == LOCAL_CALL_FLOW, f"README.md:{e.line}"


class Walk:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.conn = env["AzureWebJobsStorage"]
        self.outbound = env["OUTBOUND_QUEUE_NAME"]
        self.sent_keys: list[str] = []  # validated jobs: each must be sent
        self.unvalidated = 0  # --no-validate enqueues: each may end in -rejected
        self.mms = 0

    def queue(self, suffix: str = "") -> QueueClient:
        return QueueClient.from_connection_string(self.conn, self.outbound + suffix)

    def run(self, where: str, argv: list[str] | str) -> str:
        res = subprocess.run(argv, cwd=ROOT, env=self.env, capture_output=True, text=True,
                             timeout=60, shell=isinstance(argv, str), executable=(
                                 "/bin/bash" if isinstance(argv, str) else None))
        assert res.returncode == 0, f"{where}: exit {res.returncode}\n{res.stdout}{res.stderr}"
        assert "Traceback" not in res.stderr, f"{where}:\n{res.stderr}"
        self._enqueued(res.stdout, argv if isinstance(argv, str) else " ".join(argv))
        self.settle()
        return res.stdout

    def _enqueued(self, out: str, command: str) -> None:
        for m in re.finditer(r"^enqueued (?:job (\S+)|a message that is not JSON) as message",
                             out, re.M):
            if "--no-validate" in command:
                self.unvalidated += 1
            else:
                assert m[1], out
                self.sent_keys.append(m[1])
                self.mms += "media_url" in command

    def settle(self, timeout: float = 30) -> None:
        """Until the app has taken every message off the outbound queue."""
        deadline = time.monotonic() + timeout
        while self.queue().get_queue_properties().approximate_message_count:
            assert time.monotonic() < deadline, "the outbound queue did not drain"
            time.sleep(0.2)

    def statuses(self) -> dict[str, str | None]:
        table = TableClient.from_connection_string(self.conn, self.env["JOBS_TABLE_NAME"])
        out = {}
        for key in self.sent_keys:
            try:
                out[key] = table.get_entity("job", key).get("status")
            except Exception:  # noqa: BLE001 - no row: reported below
                out[key] = None
        return out


def test_every_readme_example_works_on_run_local(tmp_path: Path) -> None:
    ports = Ports.free()
    env = local_env(tmp_path, ports)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    run = RunLocal.start(env, ports, tmp_path / "logs")
    walk = Walk(env)
    walked = 0
    try:
        run.wait_for(READY)
        for e in examples(README.read_text()):
            where = f"README.md:{e.line}: {e.text[:100]}"
            if e.kind == "run":
                walk.run(where, e.text)
            elif e.kind == "job":
                walk.run(where, [sys.executable, "-m", "ops", "enqueue", e.text])
            elif e.kind == "twimlet":
                out = walk.run(where, [sys.executable, "-m", "ops", "webhook", "--get", e.text])
                assert out.startswith("200 text/xml") and "<Response>" in out, f"{where}\n{out}"
            else:
                continue
            walked += 1
        try_lines = [line.strip() for line in run.lines
                     if line.startswith("  ") and TOOL.match(line.strip())]
        assert try_lines, run.output
        for line in try_lines:
            walk.run(f"the banner: {line}", line)
        deadline = time.monotonic() + 30
        while set(walk.statuses().values()) - {"sent"} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert walk.statuses() == dict.fromkeys(walk.sent_keys, "sent")
        assert walk.mms >= 1  # the README's MMS example was sent
        assert [m.content for m in walk.queue("-poison").peek_messages(32)] == []
        rejected = [json.loads(m.content) for m in walk.queue("-rejected").peek_messages(32)]
        assert [r["kind"] for r in rejected] == ["invalid_job"] * walk.unvalidated
        run.ctrl_c()
        assert run.wait() == 130
    finally:
        run.stop()
    assert "Traceback" not in run.output, run.output
    assert walked >= 20
    print(f"walked {walked} README examples and {len(try_lines)} banner commands; "
          f"{len(walk.sent_keys)} jobs sent")
