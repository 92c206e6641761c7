"""Every example in every `python -m ops ... --help` works: each runs on `scripts/run-local`
as a new user would (no local.settings.json) and succeeds; one with `<placeholders>` (a
deployment's names) parses with the tool's options (issue 21)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from azure.storage.queue import QueueClient

from ops.__main__ import parser as ops_parser
from tests.integration.run_local_helpers import READY, ROOT, Ports, RunLocal, local_env
from tests.integration.test_readme_walk import sh_lines

TOOL = re.compile(r"(?:^|\|\s*)python -m ops\b")


def command_paths(p: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield prefix
    for action in p._actions:
        if hasattr(action, "add_parser"):
            for name, sub in action.choices.items():
                yield from command_paths(sub, (*prefix, name))


def help_of(path: tuple[str, ...]) -> str:
    parser = ops_parser()
    for name in path:
        parser = next(a for a in parser._actions if hasattr(a, "add_parser")).choices[name]
    return str(parser.format_help())


def examples() -> list[str]:
    """The example commands of every --help, once each, `enqueue`'s first (the others look
    at what it sent)."""
    found: dict[str, None] = {}
    paths = sorted(command_paths(ops_parser()), key=lambda p: p[:1] != ("enqueue",))
    for path in paths:
        for _, line in sh_lines(help_of(path)):
            if TOOL.search(line):
                found[line] = None
    return list(found)


def test_the_examples_cover_every_command() -> None:
    seen = {" ".join(shlex.split(e.split("|")[-1])[3:5]) for e in examples()}
    assert seen >= {"jobs show", "deadletters list", "deadletters show", "deadletters replay",
                    "deadletters delete", "numbers show", "numbers connect",
                    "ledger retention"}
    assert {e.split()[3] for e in examples()} >= {"enqueue", "webhook", "sign"}


def placeholder_parses(example: str) -> None:
    argv = shlex.split(example.split(" > ")[0])
    assert argv[:3] == ["python", "-m", "ops"], example
    ops_parser().parse_args(argv[3:])


def test_every_help_example_works_on_run_local(tmp_path: Path) -> None:
    ports = Ports.free()
    env = local_env(tmp_path, ports)
    run = RunLocal.start(env, ports, tmp_path / "logs")
    outbound = QueueClient.from_connection_string(env["AzureWebJobsStorage"],
                                                  env["OUTBOUND_QUEUE_NAME"])
    ran = []
    try:
        run.wait_for(READY)
        for example in examples():
            if "<" in example:
                placeholder_parses(example)
                continue
            command = TOOL.sub(lambda m: m[0].replace("python", shlex.quote(sys.executable)),
                               example)
            done = subprocess.run(command, shell=True, executable="/bin/bash", cwd=tmp_path,
                                  env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True,
                                  text=True, timeout=60)
            assert done.returncode == 0, f"{example}\n{done.stdout}{done.stderr}"
            assert "Traceback" not in done.stderr, f"{example}\n{done.stderr}"
            ran.append(example)
            deadline = time.monotonic() + 30  # what it enqueued is processed
            while outbound.get_queue_properties().approximate_message_count:
                assert time.monotonic() < deadline, f"{example}: the queue did not drain"
                time.sleep(0.2)
    finally:
        run.stop()
    assert len(ran) >= 20, ran
    print(f"ran {len(ran)} --help examples on run-local")
