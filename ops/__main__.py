# ruff: noqa: E402 - the packages are checked before anything imports them
"""`python -m ops`: tools for producers and operators, against the local app (Azurite, the
dev host) or a real deployment (your Azure login).

  jobs show ID            a job's row in the ledger: sent or not, as what, and why
  deadletters list        what is in <queue>-rejected and -poison: kind, reason, code, age
  deadletters show ID     one dead letter: its envelope and its original message
  deadletters replay      send dead letters again, under the id the ledger needs
  deadletters delete ID   discard dead letters
  enqueue                 put a job on the outbound queue, checked against the schema
  webhook / sign          play Twilio: a signed webhook request, or just its signature
  numbers show|connect    what a Twilio number points at; point it at the app
  ledger retention        how long the ledger keeps rows, and what the last clean-up did

`python -m ops <command> --help` for each. Exit status: 0 done, 1 failed (a request, a
replay), 2 bad input or settings, 3 not found, 130 interrupted, 141 output cut (a closed
pipe, as `| head`).
"""

from __future__ import annotations

import sys
from importlib.util import find_spec

# What the tools import (requirements.txt). Outside the project's venv they are missing:
# say how to run the tools instead of a ModuleNotFoundError traceback.
NEEDED = ("twilio", "aiohttp", "azure.core", "azure.identity", "azure.storage.queue",
          "azure.data.tables", "jsonschema", "fastjsonschema")


def missing_packages() -> list[str]:
    out = []
    for name in NEEDED:
        try:
            found = find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            found = False
        if not found:
            out.append(name)
    return out


if __name__ == "__main__" and (sys.version_info < (3, 11) or missing_packages()):
    print(f"python -m ops: this Python ({sys.executable}) is not the project's "
          f"(missing: {', '.join(missing_packages()) or 'Python 3.11'}): run "
          "`.venv/bin/python -m ops ...` from the repository (scripts/bootstrap makes .venv)",
          file=sys.stderr)
    sys.exit(2)

import argparse
import asyncio
import inspect
import logging
import os

from ops import deadletters, enqueue, jobs, ledger, numbers, webhook
from ops.target import OpsError, explain

CUT_OFF = 141  # what a shell reports for a command stopped by SIGPIPE


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true",
                   help="log the Azure SDK's requests and show tracebacks")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (jobs, deadletters, enqueue, webhook, numbers, ledger):
        module.add_parser(commands)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    # Queue messages and table rows can hold any text, a lone surrogate included: print it
    # escaped rather than fail on it.
    if hasattr(sys.stdout, "reconfigure"):
        sys.stdout.reconfigure(errors="backslashreplace")
    azure_log = logging.getLogger("azure")
    level = azure_log.level
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    else:
        # The SDKs warn (a failed login, once per retry) through Python's last-resort
        # handler; the tool says it once, in its own words.
        azure_log.setLevel(logging.CRITICAL)
    try:
        code = _run(args)
        sys.stdout.flush()  # a pipe closed early fails here, not at exit
        return code
    except BrokenPipeError:
        # The reader went away (`| head -1`): stop quietly. Later writes, and the flush at
        # exit, go nowhere instead of raising again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return CUT_OFF
    finally:
        azure_log.setLevel(level)


def _run(args: argparse.Namespace) -> int:
    try:
        result = args.run(args)
        if inspect.iscoroutine(result):
            result = asyncio.run(result)
        return int(result)
    except OpsError as exc:
        if args.debug and exc.__cause__ is not None:
            raise  # the SDK error it explains, with its traceback
        print(f"{parser().prog} {args.command}: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        raise
    except Exception as exc:
        line = explain(exc, "the storage account")
        if line is None or args.debug:
            raise
        print(f"{parser().prog} {args.command}: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
