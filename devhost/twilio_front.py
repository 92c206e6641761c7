"""`python -m devhost.twilio_front`: a spec-checked front that lets Prism read Twilio's lists,
and answers Twilio's magic test numbers as Twilio's test credentials do.

Twilio's API takes a list as the same form field repeated (`MediaUrl=a&MediaUrl=b`: the
OpenAPI default for an array in a form body, style `form` with `explode`), and Twilio's spec
declares those fields as arrays. Prism 5 reads a repeated field as one string and refuses it
("must be array"; stoplightio/prism#2473), while it reads `MediaUrl[0]=a&MediaUrl[1]=b` as an
array, whose items it then leaves unchecked.

So, for the fields the spec declares as arrays on the operation requested (and only those),
this front checks the values against the spec's own schema for the field and renames them to
the bracketed form; a list that fails gets Prism's 422 shape naming the field. A request
without such fields reaches Prism byte for byte, and Prism validates the rest of every
request as before.
A message or call that Prism accepts but names one of Twilio's magic test numbers
(`devhost.magic_numbers`) gets the error Twilio documents for it instead, in Twilio's error
body and status, so every refusal the app classifies can be practised locally.
Each request is logged on one line (method, path, status, and the reasons for a 4xx).
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from aiohttp import ClientError, ClientSession, ClientTimeout, web
from jsonschema import Draft7Validator, FormatChecker

from devhost import magic_numbers
from devhost.services import TWILIO_FRONT_MARKER, TWILIO_SPEC

log = logging.getLogger("twilio_front")
FORM = "application/x-www-form-urlencoded"
# Headers that describe one hop, not the request.
_HOP = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_CREATE = re.compile(r"^/2010-04-01/Accounts/[^/]+/(Messages|Calls)\.json$")

def _is_uri(value: object) -> bool:
    """RFC 3986's absolute URI: a scheme, then no spaces or control characters."""
    if not isinstance(value, str):
        return True
    return bool(_SCHEME.match(value)) and not any(c.isspace() or ord(c) < 32 for c in value) \
        and bool(urlsplit(value).netloc or urlsplit(value).path)


format_checker = FormatChecker(formats=())
format_checker.checks("uri")(_is_uri)


@dataclass(frozen=True)
class Operation:
    method: str
    pattern: re.Pattern[str]
    arrays: dict[str, Draft7Validator]  # form field -> validator of the whole list


def operations(spec: dict[str, Any]) -> list[Operation]:
    """The operations whose form body has array fields, most literal path first."""
    ops: list[tuple[int, Operation]] = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            if not isinstance(op, dict):
                continue
            form = op.get("requestBody", {}).get("content", {}).get(FORM)
            props = (form or {}).get("schema", {}).get("properties", {})
            arrays = {name: Draft7Validator({**schema, "components": spec.get("components", {})},
                                            format_checker=format_checker)
                      for name, schema in props.items() if schema.get("type") == "array"}
            if arrays:
                regex = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path))
                ops.append((path.count("{"), Operation(method.upper(), re.compile(f"^{regex}$"),
                                                       arrays)))
    return [op for _, op in sorted(ops, key=lambda item: item[0])]


def rewrite(body: str, arrays: dict[str, Draft7Validator]) -> tuple[str, list[dict[str, Any]]]:
    """The form with each array field in bracketed form, and the problems found (Prism's
    `validation` entries). Fields already bracketed, and all others, are left alone."""
    pairs = parse_qsl(body, keep_blank_values=True)
    lists: dict[str, list[str]] = {}
    for name, value in pairs:
        if name in arrays:
            lists.setdefault(name, []).append(value)
    if not lists:
        return body, []  # nothing to rewrite: the body goes on as it came
    problems = []
    for name, values in lists.items():
        for error in arrays[name].iter_errors(values):
            problems.append({"location": ["body", name, *map(str, error.absolute_path)],
                             "severity": "Error", "code": str(error.validator),
                             "message": f"Request body property {name} {error.message}"})
    index: dict[str, int] = {}
    out = []
    for name, value in pairs:
        if name in arrays:
            out.append((f"{name}[{index.setdefault(name, 0)}]", value))
            index[name] += 1
        else:
            out.append((name, value))
    return urlencode(out), problems


class Front:
    def __init__(self, upstream: str, spec_path: Path = TWILIO_SPEC) -> None:
        self.upstream = upstream.rstrip("/")
        self.ops = operations(json.loads(spec_path.read_text(encoding="utf-8")))
        self._session: ClientSession | None = None

    def _arrays(self, method: str, path: str) -> dict[str, Draft7Validator]:
        for op in self.ops:
            if op.method == method and op.pattern.match(path):
                return op.arrays
        return {}

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        arrays = self._arrays(request.method, request.path)
        if arrays and request.content_type == FORM:
            text, problems = rewrite(body.decode("utf-8"), arrays)
            if problems:
                log.info("%s %s -> 422 %s", request.method, request.path,
                         "; ".join(p["message"] for p in problems))
                return web.json_response({
                    "type": "https://stoplight.io/prism/errors#UNPROCESSABLE_ENTITY",
                    "title": "Invalid request", "status": 422,
                    "detail": "Your request is not valid (checked by devhost.twilio_front "
                              "against Twilio's spec).", "validation": problems},
                    status=422, content_type="application/problem+json")
            body = text.encode("utf-8")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP}
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=30))
        try:
            async with self._session.request(request.method, self.upstream + request.path_qs,
                                             data=body or None, headers=headers) as res:
                payload = await res.read()
                status = res.status
                content_type = res.headers.get("Content-Type", "application/json")
        except (ClientError, TimeoutError) as exc:
            log.info("%s %s -> 502 Prism at %s did not answer (%s)", request.method,
                     request.path, self.upstream, type(exc).__name__)
            return web.json_response({"status": 502, "message": f"Prism at {self.upstream} did "
                                      f"not answer ({type(exc).__name__})"}, status=502)
        refused = self._magic(request, body) if status < 300 else None
        if refused is not None:
            log.info("%s %s -> %d %d %s", request.method, request.path, refused["status"],
                     refused["code"], refused["message"])
            return web.json_response(refused, status=refused["status"])
        if status >= 400:
            log.info("%s %s -> %d %s", request.method, request.path, status,
                     payload.decode("utf-8", "replace")[:500])
        else:
            log.info("%s %s -> %d", request.method, request.path, status)
        return web.Response(status=status, body=payload, headers={"Content-Type": content_type})

    @staticmethod
    def _magic(request: web.Request, body: bytes) -> dict[str, Any] | None:
        """Twilio's error for a magic test number in a create, after Prism has checked the
        rest of the request (Twilio validates input first)."""
        found = _CREATE.match(request.path) if request.method == "POST" else None
        if found is None or request.content_type != FORM:
            return None
        form = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        return magic_numbers.refusal(found[1], form)

    async def marker(self, _: web.Request) -> web.Response:
        """So a run can tell this front from a bare Prism."""
        return web.Response(text="twilio_front\n")

    async def close(self, _: web.Application | None = None) -> None:
        if self._session is not None:
            await self._session.close()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(TWILIO_FRONT_MARKER, self.marker)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        app.on_cleanup.append(self.close)
        return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m devhost.twilio_front",
                                     description=__doc__.split("\n", 1)[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="Prism's URL, http://127.0.0.1:PORT")
    parser.add_argument("--spec", type=Path, default=TWILIO_SPEC)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    front = Front(args.upstream, args.spec)
    web.run_app(front.app(), host="127.0.0.1", port=args.port, print=None,
                handle_signals=True, access_log=None)


if __name__ == "__main__":
    main()
