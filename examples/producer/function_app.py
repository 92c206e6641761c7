"""A producer for the Twilio backend: another Function app whose HTTP endpoint puts an SMS job
on the backend's outbound queue with a queue output binding.

    POST /api/notify  {"to": "+15551234567", "body": "Order 1042 shipped.", "id": "order-1042"}
    -> 202 {"job": "order-1042"}

`id` is the job's key: the backend sends a job at most once per id, so a retried request
with the same id sends one SMS (without one, each request gets a new id).

The binding's connection, `TwilioBackend`, names the backend's storage account, not this
app's own. In Azure it is identity-based: TwilioBackend__queueServiceUri,
TwilioBackend__credential=managedidentity, TwilioBackend__clientId (a user-assigned
identity with "Storage Queue Data Message Sender" on the outbound queue). Locally it is a
connection string (local.settings.json.example).

host.json keeps the Functions default, base64: the host base64-encodes what the binding
writes, and the backend reads that as well as plain JSON.
"""

import json
import uuid

import azure.functions as func

app = func.FunctionApp()


def bad_request(problem: str) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"error": problem}), status_code=400,
                             mimetype="application/json")


@app.function_name("notify")
@app.route(route="notify", methods=["POST"], auth_level=func.AuthLevel.FUNCTION)
@app.queue_output(arg_name="job", queue_name="%TWILIO_OUTBOUND_QUEUE%",
                  connection="TwilioBackend")
def notify(req: func.HttpRequest, job: func.Out[str]) -> func.HttpResponse:
    try:
        doc = req.get_json()
    except ValueError:
        return bad_request('send a JSON object: {"to": "+15551234567", "body": "..."}')
    if not isinstance(doc, dict):
        return bad_request('send a JSON object: {"to": "+15551234567", "body": "..."}')
    for field in ("to", "body"):
        if not isinstance(doc.get(field), str) or not doc[field]:
            return bad_request(f"field '{field}': a non-empty string is required")
    key = doc.get("id") or f"notify-{uuid.uuid4().hex}"
    # The backend checks the rest (E.164, lengths) and dead-letters what it cannot send.
    job.set(json.dumps({"id": key, "type": "sms", "to": doc["to"], "body": doc["body"]}))
    return func.HttpResponse(json.dumps({"job": key}), status_code=202,
                             mimetype="application/json")
