"""Queue trigger: send the SMS or place the call each outbound job asks for."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()


@bp.function_name("outbound")
@bp.queue_trigger(arg_name="msg", queue_name="%OUTBOUND_QUEUE_NAME%",
                  connection="AzureWebJobsStorage")
async def outbound(msg: func.QueueMessage) -> None:
    from shared import runtime
    from shared.outbound import QueueItem

    await runtime.get().processor.process(
        QueueItem(msg.id or "", msg.get_body(), msg.dequeue_count or 1))
