"""`python -m ops`: tools for producers and operators, against the local app (Azurite, the
dev host) or a real deployment (your Azure login).

  jobs show ID            a job's row in the ledger: sent or not, as what, and why
  deadletters list        what is in <queue>-rejected and -poison: kind, reason, code, age
  deadletters replay      send dead letters again, under the id the ledger needs
  enqueue                 put a job on the outbound queue, checked against the schema
  webhook / sign          play Twilio: a signed webhook request, or just its signature

`python -m ops <command> --help` for each. Exit status: 0 done, 1 failed (a request, a
replay), 2 bad input or settings, 3 not found, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
import sys

from ops import deadletters, enqueue, jobs, webhook
from ops.target import OpsError, explain


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ops", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true",
                   help="log the Azure SDK's requests and show tracebacks")
    commands = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (jobs, deadletters, enqueue, webhook):
        module.add_parser(commands)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    azure_log = logging.getLogger("azure")
    level = azure_log.level
    if args.debug:
        logging.basicConfig(level=logging.DEBUG, format="%(levelname)s %(name)s: %(message)s")
    else:
        # The SDKs warn (a failed login, once per retry) through Python's last-resort
        # handler; the tool says it once, in its own words.
        azure_log.setLevel(logging.CRITICAL)
    try:
        return _run(args)
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
    except Exception as exc:
        line = explain(exc, "the storage account")
        if line is None or args.debug:
            raise
        print(f"{parser().prog} {args.command}: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
