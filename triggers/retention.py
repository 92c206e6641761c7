"""Timer trigger: keep the jobs table bounded (shared.retention), every hour at :20."""

from __future__ import annotations

import azure.functions as func

bp = func.Blueprint()

# Hourly, off the hour (when many schedules run). A run is bounded and resumable, and the
# host runs a timer on one instance at a time, so runs never pile up.
SCHEDULE = "0 20 * * * *"


@bp.function_name("retention")
@bp.timer_trigger(arg_name="timer", schedule=SCHEDULE, run_on_startup=False, use_monitor=True)
async def retention(timer: func.TimerRequest) -> None:
    from shared import runtime

    await runtime.get().sweep_ledger()
