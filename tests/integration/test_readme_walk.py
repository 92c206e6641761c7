"""Every example in README.md and docs/*.md, walked end to end on `scripts/run-local` as a new
user would run it (no local.settings.json): read from the pages themselves, README first, then
docs/ in name order, so an example added later (a job kind, a twimlet, a command, a page) is
walked too. Every failure names the page and line (`docs/jobs.md:120`).

- `sh` blocks: `.venv/bin/python -m ops ...` lines run as written, must succeed and must
  print what their comments promise (`Promises`: the keyword's reply, the greeting and the
  menu's `<Gather`, the job's status and SID, the dead letters and why they cannot be sent),
  with the values read from the pages (the `SMS_KEYWORDS` example, the call flow, the
  jobs) and from the queues; a command with no such check fails the walk. Lines with
  `<placeholders>` (a deployment's names) must parse with the tool's options;
  `az`/`azd`/`func azure`/`twilio` lines target Azure; anything else fails the walk.
- `json` blocks: every job is enqueued and must be sent; the call flow must be the one the
  local defaults run; events are outputs. A job to one of Twilio's magic test numbers
  (`devhost.magic_numbers`) must instead be refused with the code the Twilio double answers
  for it: rejected, with its dead letter in -rejected.
- the twimlet URLs (`/api/twiml/...`) must answer TwiML to a signed request.
- the commands the run-local banner suggests run too.
At the end nothing may be in -poison, and -rejected holds only what `--no-validate` sent and
the jobs Twilio refused.

Every relative link in these pages must point at a file that exists and, for a `#anchor`, at
a heading of that page (GitHub's slugs).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient
from twilio.twiml.messaging_response import MessagingResponse

from devhost import magic_numbers
from ops import numbers
from ops.__main__ import parser as ops_parser
from ops.enqueue import message_text
from ops.localsettings import DEV_DEFAULTS, LOCAL_CALL_FLOW
from shared.callflow import CallFlow, CallFlowError
from shared.failures import CAPACITY_CODES
from shared.ledger import FINAL_STATUSES, job_partition
from shared.settings import Settings
from tests.integration.run_local_helpers import READY, ROOT, Ports, RunLocal, local_env

README = ROOT / "README.md"
DOCS = ROOT / "docs"
KEYWORDS = re.compile(r"`SMS_KEYWORDS` \(a JSON object, e\.g\. `(\{[^`]*\})`\)")
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.M | re.S)
TWIMLET = re.compile(r"`(/api/twiml/[^`\s]+)`")
TOOL = re.compile(r"^(\.venv/bin/)?python -m ops\b")
AZURE = ("az ", "azd ", "func azure ", "twilio ")
HARNESS = ("scripts/run-local", "scripts/test")
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_SPAN = re.compile(r"`[^`\n]*`")
HEADING = re.compile(r"^#{1,6} +(.+?) *#*$", re.M)


def pages() -> list[Path]:
    """The pages walked, in walking order: README.md, then docs/*.md by name."""
    return [README, *sorted(DOCS.glob("*.md"))]


def page_name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@dataclass(frozen=True)
class Example:
    page: str  # README.md, docs/jobs.md ...
    line: int  # in that page
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


def examples(text: str, page: str = "README.md") -> list[Example]:
    found = []
    for m in FENCE.finditer(text):
        language, body = m[1], m[2]
        first = text.count("\n", 0, m.start(2)) + 1
        if language == "sh":
            found += [Example(page, first + i, command_kind(c), c) for i, c in sh_lines(body)]
        elif language == "json":
            found += [Example(page, first, doc_kind(d), json.dumps(d), d) for d in json_docs(body)]
    for m in TWIMLET.finditer(text):
        found.append(Example(page, text.count("\n", 0, m.start()) + 1, "twimlet", m[1]))
    return sorted(found, key=lambda e: e.line)


def all_examples(texts: dict[str, str]) -> list[Example]:
    """Every page's examples, page by page in walking order."""
    return [e for page, text in texts.items() for e in examples(text, page)]


def read_pages() -> dict[str, str]:
    return {page_name(p): p.read_text() for p in pages()}


def readme_keywords(texts: dict[str, str]) -> dict[str, str]:
    found = [json.loads(m[1]) for text in texts.values() for m in KEYWORDS.finditer(text)]
    assert found, "README.md and docs/: no `SMS_KEYWORDS` example"
    assert all(f == found[0] for f in found), "the `SMS_KEYWORDS` examples disagree"
    return dict(found[0])


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: link text kept, lower case, punctuation dropped
    (letters, digits, `_`, `-` and spaces stay), each space a hyphen."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings (outside code blocks), repeats numbered as GitHub does."""
    seen: dict[str, int] = {}
    out = set()
    for m in HEADING.finditer(FENCE.sub("", text)):
        base = slug(m[1])
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def link_problems(root: Path, texts: dict[str, str]) -> list[str]:
    """Relative links (outside code) that point at no file, or at no heading of their page."""
    problems = []
    for page, text in texts.items():
        prose = CODE_SPAN.sub("", FENCE.sub(lambda m: "\n" * m[0].count("\n"), text))
        for m in LINK.finditer(prose):
            target = m[1]
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto: ...
                continue
            where = f"{page}:{prose.count(chr(10), 0, m.start()) + 1}: ({target})"
            path, _, anchor = target.partition("#")
            file = (root / page).parent / path if path else root / page
            if not file.resolve().is_relative_to(root.resolve()) or not file.exists():
                problems.append(f"{where}: no such file")
            elif anchor:
                rel = file.resolve().relative_to(root.resolve()).as_posix()
                heads = anchors(texts[rel] if rel in texts else file.read_text()) \
                    if file.suffix == ".md" else set()
                if anchor not in heads:
                    problems.append(f"{where}: no heading #{anchor} in {rel}")
    return problems


def test_every_relative_link_points_at_a_file_and_heading() -> None:
    assert link_problems(ROOT, read_pages()) == []


def test_the_link_check_reports_broken_links(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("# A page\n\n## Who sends (`from`)\n")
    texts = {"README.md": "[a](docs/a.md#who-sends-from) [b](docs/b.md) [c](docs/a.md#nope)\n"
                          "`[d](nope.md)` [e](https://example.com/x) [f](#here)\n\n## Here\n",
             "docs/a.md": (tmp_path / "docs" / "a.md").read_text()}
    (tmp_path / "README.md").write_text(texts["README.md"])
    assert link_problems(tmp_path, texts) == [
        "README.md:1: (docs/b.md): no such file",
        "README.md:1: (docs/a.md#nope): no heading #nope in docs/a.md"]
    assert anchors("# T\n## Deploy to Azure\n## Deploy to Azure\n## Incoming call flow "
                   "without code (`CALL_FLOW`)\n") == {
        "t", "deploy-to-azure", "deploy-to-azure-1", "incoming-call-flow-without-code-call_flow"}


def test_the_readme_parses_into_known_examples() -> None:
    texts = read_pages()
    assert list(texts)[0] == "README.md" and len(texts) > 1, list(texts)
    # The keyword replies the docs show are the ones the local defaults answer.
    assert readme_keywords(texts) == json.loads(DEV_DEFAULTS["SMS_KEYWORDS"])
    found = all_examples(texts)
    unknown = [f"{e.page}:{e.line}: {e.text}" for e in found if e.kind == "unknown"]
    assert unknown == [], "examples the walk does not know how to run"
    kinds = {e.kind for e in found}
    assert {"run", "template", "azure", "job", "call_flow", "twimlet"} <= kinds
    for e in found:
        if e.kind == "template":  # a deployment's names: the options must exist
            try:
                ops_parser().parse_args(shlex.split(e.text, comments=True)[3:])
            except SystemExit:
                pytest.fail(f"{e.page}:{e.line}: {e.text} does not parse")
        if e.kind == "call_flow":  # what the docs show is what runs locally
            assert e.doc == LOCAL_CALL_FLOW, f"{e.page}:{e.line}"


class Walk:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.conn = env["AzureWebJobsStorage"]
        self.outbound = env["OUTBOUND_QUEUE_NAME"]
        self.sent_keys: list[str] = []  # validated jobs: each must be sent
        self.refused: dict[str, int] = {}  # jobs to magic test numbers: key -> Twilio's code
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
        self._enqueued(res.stdout, argv)
        self.settle()
        return res.stdout

    def _enqueued(self, out: str, argv: list[str] | str) -> None:
        command = argv if isinstance(argv, str) else " ".join(argv)
        for m in re.finditer(r"^enqueued (?:job (\S+)|a message that is not JSON) as message",
                             out, re.M):
            if "--no-validate" in command:
                self.unvalidated += 1
                continue
            assert m[1], out
            code = refusal(shell_argv(argv) if isinstance(argv, str) else argv[3:])
            if code is not None:
                assert code not in CAPACITY_CODES, f"{command}: a {code} is retried for minutes"
                self.refused[m[1]] = code
                continue
            self.sent_keys.append(m[1])
            self.mms += "media_url" in command

    def settle(self, timeout: float = 30) -> None:
        """Until the app has taken every message off the outbound queue."""
        deadline = time.monotonic() + timeout
        while self.queue().get_queue_properties().approximate_message_count:
            assert time.monotonic() < deadline, "the outbound queue did not drain"
            time.sleep(0.2)

    def letters(self) -> list[dict[str, Any]]:
        """The dead letters now in -rejected and -poison, oldest first (envelopes)."""
        out = []
        for suffix in ("-rejected", "-poison"):
            for m in self.queue(suffix).peek_messages(32):
                out.append({**json.loads(m.content), "message_id": m.id})
        return sorted(out, key=lambda d: str(d.get("at")))

    def status(self, key: str) -> str | None:
        table = TableClient.from_connection_string(self.conn, self.env["JOBS_TABLE_NAME"])
        try:
            return table.get_entity(job_partition(key), key).get("status")
        except Exception:  # noqa: BLE001 - no row (yet)
            return None

    def statuses(self) -> dict[str, str | None]:
        return {key: self.status(key) for key in self.sent_keys}


def refusal(args: list[str]) -> int | None:
    """The code the Twilio double refuses an enqueued job with (a magic test number in it),
    or None; `args` as `python -m ops` takes them."""
    _, job = message_text(ops_parser().parse_args(args))
    if job is None:
        return None
    refused = magic_numbers.refusal(
        "Calls" if job.get("type") == "call" else "Messages",
        {"To": job.get("to", ""), "From": job.get("from", DEV_DEFAULTS["TWILIO_FROM_NUMBER"])})
    return int(refused["code"]) if refused else None


def shell_argv(command: str) -> list[str]:
    """The arguments a README command gives `python -m ops`, as the shell passes them (one
    computes a date with `$(...)`)."""
    echo = f"{shlex.quote(sys.executable)} -c 'import json, sys; print(json.dumps(sys.argv[1:]))'"
    res = subprocess.run(TOOL.sub(echo, command, count=1), shell=True, executable="/bin/bash",
                         cwd=ROOT, capture_output=True, text=True, check=True)
    return list(json.loads(res.stdout))


def body(where: str, out: str) -> ET.Element:
    """The TwiML of a webhook's answer (`ops webhook` prints the status line first)."""
    status, _, text = out.partition("\n")
    assert status.startswith("200 text/xml"), f"{where}\n{out}"
    return ET.fromstring(text)


class Promises:
    """What each README command's comment says it prints, checked on what it printed."""

    def __init__(self, walk: Walk, texts: dict[str, str]) -> None:
        self.walk = walk
        self.keywords = readme_keywords(texts)
        self.call_flow = next(e.doc for e in all_examples(texts) if e.kind == "call_flow")
        self.checked: set[str] = set()

    def check(self, where: str, command: str, out: str) -> None:
        args = ops_parser().parse_args(shell_argv(command))
        name = " ".join(filter(None, (args.command, getattr(args, "action", None))))
        self.checked.add(f"{name} {getattr(args, 'path', '')}".strip())
        if name == "webhook" and args.path == "/api/sms":
            self.sms(where, args, out)
        elif name == "webhook" and args.path == "/api/voice":
            self.call(where, args, out)
        elif name == "enqueue":
            assert re.match(rf"^enqueued (job \S+|a message that is not JSON) as message \S+ "
                            rf"on {self.walk.outbound} \(Azurite on ", out), f"{where}\n{out}"
        elif name == "deadletters list":
            self.dead_letters(where, args, out)
        elif name == "jobs show":
            self.job_row(where, args, out)
        elif name == "deadletters replay" and args.dry_run:
            self.dry_run(where, args, out)
        elif name in ("numbers show", "numbers connect"):
            self.number(where, args, out)
        elif name == "ledger retention":
            self.retention(where, out)
        else:
            pytest.fail(f"{where}: the walk does not check what this command promises")

    def sms(self, where: str, args: Any, out: str) -> None:
        """# a signed SMS webhook: the keyword's reply"""
        fields = dict(p.split("=", 1) for p in args.params)
        reply = self.keywords[fields["Body"].split()[0].upper()]
        expected = MessagingResponse()
        expected.message(reply)
        assert out == f"200 text/xml; charset=utf-8\n{expected}\n", where

    def call(self, where: str, args: Any, out: str) -> None:
        """# a call: greeting and menu (the menu is a redirect away, as Twilio follows it)"""
        answer = body(where, out)
        assert [(e.tag, e.text) for e in answer][:1] == [("Say", self.call_flow["greeting"])]
        redirect = answer.find("Redirect")
        assert redirect is not None and redirect.text, f"{where}\n{out}"
        menu = body(where, self.walk.run(f"{where} -> {redirect.text[:60]}", [
            sys.executable, "-m", "ops", "webhook", redirect.text, *args.params]))
        gather = menu.find("Gather")
        assert gather is not None, f"{where}: no <Gather in the menu"
        assert [e.text for e in gather.iter("Say")] == [self.call_flow["menu"]["message"]]

    def job_row(self, where: str, args: Any, out: str) -> None:
        """# was it sent? as what?  /  # rejected, with Twilio's code and reason"""
        deadline = time.monotonic() + 30
        while self.walk.status(args.id) not in FINAL_STATUSES:
            assert time.monotonic() < deadline, f"{where}: {args.id} never reached a final status"
            time.sleep(0.2)
        if args.id in self.walk.refused:
            code = self.walk.refused[args.id]
            row = json.loads(out) if args.json else None
            if row is not None:
                assert (row["status"], row["twilio_code"]) == ("rejected", code), f"{where}\n{out}"
                return
            assert re.search(r"^  status +rejected\b", out, re.M), f"{where}\n{out}"
            assert re.search(rf"^  Twilio .*code +{code}$", out, re.M), f"{where}\n{out}"
            assert re.search(rf"^  last error +Twilio answered HTTP 400, error {code}: ", out,
                             re.M), f"{where}\n{out}"
            return
        if args.json:
            row = json.loads(out)
            assert (row["status"], row["sid"][:2]) == ("sent", "SM"), f"{where}\n{out}"
            return
        lines = out.splitlines()
        assert lines[0].startswith(f"job {args.id}  (table {self.walk.env['JOBS_TABLE_NAME']}")
        assert re.search(r"^  status +sent: Twilio accepted it$", out, re.M), f"{where}\n{out}"
        assert re.search(r"^  Twilio SID +SM[0-9a-f]{32}$", out, re.M), f"{where}\n{out}"

    def selected(self, args: Any) -> list[dict[str, Any]]:
        return [d for d in self.walk.letters() if not args.kind or d["kind"] in args.kind]

    def dead_letters(self, where: str, args: Any, out: str) -> None:
        """# what could not be sent, and why"""
        letters = self.selected(args)
        if not letters:
            assert out == ("No dead letters match.\n" if args.kind else "No dead letters.\n")
            return
        header, *rows = out.splitlines()
        assert header.split() == ["AGE", "QUEUE", "KIND", "CODE", "JOB", "KEY", "MESSAGE",
                                  "ID", "REASON"], f"{where}\n{out}"
        assert len(rows) == len(letters), f"{where}\n{out}"
        for row, letter in zip(rows, letters, strict=True):
            assert row.split()[2:6] == [letter["kind"], str(letter["twilio_code"] or "-"),
                                        letter["job_key"] or "-", letter["message_id"]], row
            assert row.endswith(" ".join(letter["reason"].split())), f"{where}\n{row}"

    def dry_run(self, where: str, args: Any, out: str) -> None:
        """# says why it cannot be sent as it is"""
        letters = self.selected(args)
        assert letters, f"{where}: nothing to replay"
        lines = out.splitlines()
        for letter in letters:
            line = next((x for x in lines if letter["message_id"] in x), "")
            assert line.startswith("skipped") and line.endswith(
                f"still not a valid job ({letter['reason']}): fix it and enqueue it"), \
                f"{where}\n{out}"
        assert lines[-1].endswith("Dry run: nothing was changed.")
        assert self.selected(args) == letters  # still there


    def number(self, where: str, args: Any, out: str) -> None:
        """# what the number points at now / # what connect would change, old -> new"""
        base = self.walk.env["WEBHOOK_BASE_URL"]
        lines = out.splitlines()
        assert lines[0].startswith(f"number {args.number} (PN"), f"{where}\n{out}"
        fields = lines[2:-1] if args.action == "connect" else lines[1:-1]
        assert [f.split()[0] for f in fields] == list(numbers.SHOWN), f"{where}\n{out}"
        if args.action == "show":
            assert lines[-1].startswith((f"It points at {base} ", f"It does not point at "
                                         f"{base} ")), f"{where}\n{out}"
            return
        wanted = numbers.wanted(base)
        changed = [f.split() for f in fields if " -> " in f]
        assert all(c[-1] == (wanted[c[0]] or "(none)") for c in changed), f"{where}\n{out}"
        assert all(f.endswith(" (unchanged)") for f in fields if " -> " not in f), out
        if args.dry_run:
            assert lines[-1] == f"Dry run: nothing was changed ({len(changed)} fields would be).", \
                f"{where}\n{out}"
        else:
            assert lines[-1].startswith(("Connected: ", "Already connected to ")), out

    def retention(self, where: str, out: str) -> None:
        """# the retention in force, and the last run"""
        defaults = Settings(key_vault_url=None)
        lines = out.splitlines()
        assert lines[0].startswith(f"Retention in table {self.walk.env['JOBS_TABLE_NAME']} "
                                   "(Azurite on "), f"{where}\n{out}"
        assert [line.split() for line in lines[1:3]] == [
            ["JOB_RETENTION_DAYS", f"{defaults.job_retention_days:g}", "default"],
            ["WEBHOOK_EFFECT_RETENTION_HOURS", f"{defaults.webhook_effect_retention_hours:g}",
             "default"]], f"{where}\n{out}"
        assert re.match(r"^Last run: (no retention run yet\.|.*: deleted \d+ rows; )",
                        lines[-1]), f"{where}\n{out}"


# The deployment path (docs/deploy.md, "After azd up") is written with a deployment's names;
# the walk runs it on run-local with local ones, so every step from the smoke test to the
# first SMS runs as written. Other placeholders (a dead letter's id ...) are only parsed.
PRISM_NUMBER = "+18089255327"  # the number Twilio's spec, hence Prism, answers with
DEPLOY_PATH = "docs/deploy.md"


def localized(command: str, env: dict[str, str]) -> str | None:
    """`command` with a deployment's names replaced by run-local's, or None if it holds a
    placeholder the walk has no local value for."""
    local = re.sub(r" --account <AZURE_STORAGE_ACCOUNT_NAME>", "", command)
    for placeholder, value in {"https://<FUNCTION_APP_HOST>": env["WEBHOOK_BASE_URL"],
                               "<E.164>": PRISM_NUMBER, "<your-number>": "+15551234567",
                               "<TWILIO_FROM_NUMBER>": "+15005550006"}.items():
        local = local.replace(placeholder, value)
    return None if "<" in local.split("#")[0] else local


def test_every_readme_example_works_on_run_local(tmp_path: Path) -> None:
    ports = Ports.free()
    env = local_env(tmp_path, ports)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    run = RunLocal.start(env, ports, tmp_path / "logs")
    walk = Walk(env)
    texts = read_pages()
    promises = Promises(walk, texts)
    walked = deploy_path = 0
    try:
        run.wait_for(READY)
        for e in all_examples(texts):
            where = f"{e.page}:{e.line}: {e.text[:100]}"
            if e.kind == "run":
                promises.check(where, e.text, walk.run(where, e.text))
            elif e.kind == "job":
                # A job shown on two pages is enqueued twice under its id: the app sends
                # it once (`enqueue` refuses a sent id unless --force).
                walk.run(where, [sys.executable, "-m", "ops", "enqueue", "--force", e.text])
            elif e.kind == "twimlet":
                out = walk.run(where, [sys.executable, "-m", "ops", "webhook", "--get", e.text])
                assert out.startswith("200 text/xml") and "<Response>" in out, f"{where}\n{out}"
            elif e.kind == "template" and e.page == DEPLOY_PATH and \
                    (local := localized(e.text, env)) is not None:
                where += " (with run-local's names)"
                promises.check(where, local, walk.run(where, local))
                deploy_path += 1
            else:
                continue
            walked += 1
        try_lines = [line.strip() for line in run.lines
                     if line.startswith("  ") and TOOL.match(line.strip())]
        assert try_lines, run.output
        for line in try_lines:
            promises.check(f"the banner: {line}", line, walk.run(f"the banner: {line}", line))
        deadline = time.monotonic() + 30
        while set(walk.statuses().values()) - {"sent"} and time.monotonic() < deadline:
            time.sleep(0.2)
        assert walk.statuses() == dict.fromkeys(walk.sent_keys, "sent")
        assert {key: walk.status(key) for key in walk.refused} == \
            dict.fromkeys(walk.refused, "rejected")
        assert promises.checked == {"webhook /api/sms", "webhook /api/voice", "enqueue",
                                    "jobs show", "deadletters list", "deadletters replay",
                                    "numbers show", "numbers connect", "ledger retention"}
        assert walk.mms >= 1  # the README's MMS example was sent
        assert [m.content for m in walk.queue("-poison").peek_messages(32)] == []
        rejected = [json.loads(m.content) for m in walk.queue("-rejected").peek_messages(32)]
        assert sorted((r["kind"], r["twilio_code"]) for r in rejected) == sorted(
            [("invalid_job", None)] * walk.unvalidated +
            [("twilio_permanent", code) for code in walk.refused.values()])
        run.ctrl_c()
        assert run.wait() == 130
    finally:
        run.stop()
    assert "Traceback" not in run.output, run.output
    assert walked >= 20
    # The smoke test, the number's three steps, the first SMS and its outcome, the letters.
    assert deploy_path >= 7, deploy_path
    print(f"walked {walked} examples of {len(texts)} pages and {len(try_lines)} banner commands; "
          f"{len(walk.sent_keys)} jobs sent")
