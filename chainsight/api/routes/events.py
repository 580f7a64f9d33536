"""`POST /v1/events`: contract events in, a per-event answer out, once they are durable.

Device-bound tokens are checked here; the backend says what became of the other events (see
`Backend.ingest`: the embedded engine's own answer, or on Kafka the decoder's).
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from chainsight.api.auth import Principal
from chainsight.api.body import parse_json, read_capped
from chainsight.api.context import Context, context, need
from chainsight.api.errors import JSON, ApiError
from chainsight.api.models import ErrorOut, IngestOut

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


def split_body(body: bytes, content_type: str) -> tuple[list[bytes], list[object | None]]:
    """The events of a body as lines, and as decoded objects where already decoded."""
    if content_type in NDJSON:
        lines = [line for line in body.split(b"\n") if line.strip(b" \t\r")]
        return lines, [None] * len(lines)
    if content_type == "application/ld+json":
        raise ApiError(415, "EPCIS capture documents are not supported yet")
    events = parse_json(body)
    if not isinstance(events, list):
        raise ApiError(400, "expected a JSON array of events (or JSON Lines with "
                            "Content-Type: application/x-ndjson)")
    return [orjson.dumps(e) for e in events], events


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


def ingest(ctx: Context, principal: Principal, lines: list[bytes],
           objects: list[object | None]) -> dict:
    """Hand the lines the token may send to the backend; the answer."""
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
    return {"accepted": result.accepted, "duplicates": result.duplicates,
            "rejected": [{"index": i, "reason": rejected[i]} for i in sorted(rejected)]}


@router.post("/v1/events", response_model=IngestOut, openapi_extra=_BODY_DOC,
             responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut}},
             summary="Send contract events (a JSON array, or JSON Lines)")
async def post_events(request: Request,
                      principal: Annotated[Principal, Depends(need("events:write"))]) -> JSON:
    body = await read_capped(request)
    content_type = request.headers.get("content-type", "application/json")
    lines, objects = split_body(body, content_type.split(";")[0].strip().lower())
    answer = await run_in_threadpool(ingest, context(request), principal, lines, objects)
    return JSON(answer)
