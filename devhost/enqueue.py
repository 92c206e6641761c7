"""`python -m devhost.enqueue`: put an outbound job on the queue, checked against the schema.

    python -m devhost.enqueue '{"type": "sms", "to": "+15551234567", "body": "hi"}'
    python -m devhost.enqueue --sms +15551234567 "Your table is ready"
    python -m devhost.enqueue --call +15551234567 "This is a reminder"
    echo '{"type": ...}' | python -m devhost.enqueue -

Storage: `--connection-string`, else `--account-url` with your Azure login (managed identity
in Azure), else the AzureWebJobsStorage setting (environment or local.settings.json).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
from typing import Any

from devhost.host import load_settings
from shared import jobs


def build_job(args: argparse.Namespace) -> dict[str, Any]:
    if args.sms:
        doc: dict[str, Any] = {"type": "sms", "to": args.sms[0], "body": args.sms[1]}
    elif args.call:
        doc = {"type": "call", "to": args.call[0], "say": args.call[1]}
    else:
        text = sys.stdin.read() if args.job == "-" else args.job
        doc = json.loads(text)
    if args.id:
        doc["id"] = args.id
    return doc


async def send(text: str, queue: str, conn: str | None, account_url: str | None) -> str:
    from azure.storage.queue.aio import QueueClient

    if conn:
        client = QueueClient.from_connection_string(conn, queue)
        credential = None
    else:
        from azure.identity.aio import DefaultAzureCredential

        credential = DefaultAzureCredential()
        client = QueueClient(account_url, queue, credential=credential)
    async with client:
        sent = await client.send_message(text)
    if credential is not None:
        await credential.close()
    return str(sent.id)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m devhost.enqueue", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("job", nargs="?", help="the job as JSON, or - to read it from stdin")
    p.add_argument("--sms", nargs=2, metavar=("TO", "BODY"))
    p.add_argument("--call", nargs=2, metavar=("TO", "SAY"))
    p.add_argument("--id", help="the job's id (its idempotency key)")
    p.add_argument("--queue", help="default: OUTBOUND_QUEUE_NAME or twilio-outbound")
    p.add_argument("--connection-string")
    p.add_argument("--account-url", help="e.g. https://<account>.queue.core.windows.net")
    p.add_argument("--base64", action="store_true", help="base64-encode the message text")
    p.add_argument("--no-validate", action="store_true", help="send even if the schema fails")
    args = p.parse_args(argv)
    if not (args.job or args.sms or args.call):
        p.error("give a job as JSON, - for stdin, --sms or --call")
    settings = load_settings()
    try:
        doc = build_job(args)
    except json.JSONDecodeError as exc:
        p.error(f"the job is not JSON: {exc}")
    if not args.no_validate:
        try:
            jobs.from_dict(doc)
        except jobs.JobRejected as exc:
            print(f"not enqueued: {exc}", file=sys.stderr)
            return 2
    text = json.dumps(doc, ensure_ascii=False)
    if args.base64:
        text = base64.b64encode(text.encode()).decode()
    queue = args.queue or settings.get("OUTBOUND_QUEUE_NAME") or "twilio-outbound"
    conn = args.connection_string or (None if args.account_url else
                                      settings.get("AzureWebJobsStorage"))
    if not conn and not args.account_url:
        p.error("no storage: give --connection-string or --account-url, or set "
                "AzureWebJobsStorage")
    message_id = asyncio.run(send(text, queue, conn, args.account_url))
    print(f"enqueued {message_id} on {queue}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
