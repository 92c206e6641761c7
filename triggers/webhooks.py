"""HTTP triggers for the webhooks Twilio calls, and `health`."""

from __future__ import annotations

import json

import azure.functions as func

import shared

bp = func.Blueprint()

# Twilio's signature is the authentication: a function key is not needed (and would have to
# be part of every URL pasted into the Twilio console). A `code=` key still works if set.
ANONYMOUS = func.AuthLevel.ANONYMOUS


async def _handle(route: str, req: func.HttpRequest) -> func.HttpResponse:
    # Imported here, not at module level: the cold start pays only for azure.functions.
    from shared import redaction, runtime
    from shared.settings import SettingsError
    from shared.webhooks import WebhookRequest

    try:
        handler = runtime.get().webhooks
    except SettingsError as exc:
        # A setting's value may be a phone number (TWILIO_FROM_NUMBER): masked.
        redaction.logger(__name__).error("configuration error: %s", exc)
        return func.HttpResponse("Service not configured; see the function's logs.\n",
                                 status_code=503, mimetype="text/plain")
    request = WebhookRequest(req.method, req.url,
                             {k.lower(): v for k, v in req.headers.items()}, req.get_body())
    response = await handler.handle(route, request)
    return func.HttpResponse(response.body, status_code=response.status,
                             headers=dict(response.headers),
                             mimetype=response.content_type.split(";")[0],
                             charset="utf-8")


@bp.function_name("voice")
@bp.route(route="voice", methods=["POST"], auth_level=ANONYMOUS)
async def voice(req: func.HttpRequest) -> func.HttpResponse:
    return await _handle("voice", req)


@bp.function_name("sms")
@bp.route(route="sms", methods=["POST"], auth_level=ANONYMOUS)
async def sms(req: func.HttpRequest) -> func.HttpResponse:
    return await _handle("sms", req)


@bp.function_name("twimlet")
@bp.route(route="twiml/{name}", methods=["GET", "POST"], auth_level=ANONYMOUS)
async def twimlet(req: func.HttpRequest) -> func.HttpResponse:
    """The twimlet drop-ins: message, echo, forward, voicemail, menu, simulring, findme,
    conference, holdmusic."""
    return await _handle(f"twiml/{req.route_params.get('name', '')}", req)


@bp.function_name("status")
@bp.route(route="status", methods=["POST"], auth_level=ANONYMOUS)
async def status(req: func.HttpRequest) -> func.HttpResponse:
    return await _handle("status", req)


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    body = {"status": "ok", "version": shared.__version__, "job_schema_version": 1}
    return func.HttpResponse(json.dumps(body), mimetype="application/json")
