"""`POST /v1/events`: contract events in, a per-event answer out, once they are durable.

Device-bound tokens are checked here; the backend says what became of the other events (see
`Backend.ingest`: the embedded engine's own answer, or on Kafka the decoder's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from chainsight.api.auth import Principal
from chainsight.api.body import parse_json, read_capped
from chainsight.api.context import Context, context, need
from chainsight.api.errors import JSON, ApiError
from chainsight.api.models import ErrorOut, IngestOut
from chainsight.trace import epcis

router = APIRouter(tags=["events"])

NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-lines")
_BODY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "array", "items": {"type": "object"}},
                         "example": [{"type": "gps", "device_id": "GPS-0001",
                                      "ts": "2026-11-25T08:00:00Z", "lat": 51.92,
                                      "lon": 4.48}]},
    "application/x-ndjson": {"schema": {"type": "string"},
                             "example": '{"type":"sensor","device_id":"TMP-0001",'
                                        '"ts":"2026-11-25T08:00:00Z","temp_c":5.2}\n'}}}}


@dataclass
class Body:
    """A request's events: as lines, as decoded objects where already decoded, the index each
    is answered under (its place in the body), and what was refused before decoding."""

    lines: list[bytes]
    objects: list[object | None]
    origin: list[int]
    refused: dict[int, str] = field(default_factory=dict)


def split_body(ctx: Context, body: bytes, content_type: str) -> Body:
    if content_type in NDJSON:
        lines = [line for line in body.split(b"\n") if line.strip(b" \t\r")]
        return Body(lines, [None] * len(lines), list(range(len(lines))))
    document = parse_json(body)
    if content_type == "application/ld+json":
        return epcis_body(ctx, document)
    if not isinstance(document, list):
        raise ApiError(400, "expected a JSON array of events (or JSON Lines with "
                            "Content-Type: application/x-ndjson)")
    return Body([orjson.dumps(e) for e in document], document, list(range(len(document))))


def epcis_body(ctx: Context, document: object) -> Body:
    """An EPCIS 2.0 capture document's scans and readings (answered under the index of the
    EPCIS event each came from)."""
    try:
        events, refused = epcis.capture(document, ctx.backend.shipment_of_sscc)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return Body([orjson.dumps(e) for _, e in events], [e for _, e in events],
                [i for i, _ in events], dict(refused))


def device_refusal(principal: Principal, event: object) -> str | None:
    """Why a device-bound token may not send this event; None when it may (or when the
    event is malformed: the engine says why)."""
    if not principal.devices or not isinstance(event, dict):
        return None
    device = event.get("device_id")
    if device is None:
        return "this token sends events of its devices only: the event has no device_id"
    if device not in principal.devices:
        return f"device {device} is not bound to this token"
    return None


def ingest(ctx: Context, principal: Principal, body: Body) -> dict:
    """Hand the events the token may send to the backend; the answer."""
    lines, objects = body.lines, body.objects
    for i, line in enumerate(lines):
        if objects[i] is None and principal.devices:
            try:
                objects[i] = orjson.loads(line)
            except orjson.JSONDecodeError:
                pass
    rejected = {i: reason for i, event in enumerate(objects)
                if (reason := device_refusal(principal, event)) is not None}
    index = [i for i in range(len(lines)) if i not in rejected]
    result = ctx.backend.ingest([lines[i] for i in index], [objects[i] for i in index])
    rejected.update({index[i]: reason for i, reason in result.rejected.items()})
    refused = {**body.refused, **{body.origin[i]: reason for i, reason in rejected.items()}}
    return {"accepted": result.accepted, "duplicates": result.duplicates,
            "rejected": [{"index": i, "reason": refused[i]} for i in sorted(refused)]}


@router.post("/v1/events", response_model=IngestOut, openapi_extra=_BODY_DOC,
             responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut}},
             summary="Send contract events (a JSON array, or JSON Lines)")
async def post_events(request: Request,
                      principal: Annotated[Principal, Depends(need("events:write"))]) -> JSON:
    body = await read_capped(request)
    content_type = request.headers.get("content-type", "application/json")
    ctx = context(request)
    events = await run_in_threadpool(split_body, ctx, body,
                                     content_type.split(";")[0].strip().lower())
    answer = await run_in_threadpool(ingest, ctx, principal, events)
    return JSON(answer)
