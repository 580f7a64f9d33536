"""`POST /v1/ask`: a question in Chinese or English, answered from the live state the
asker may see (customer-scoped tokens: their customers' shipments and alerts only)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from chainsight.api.auth import Principal
from chainsight.api.body import parse_json, read_capped
from chainsight.api.context import Context, context, need, scoped
from chainsight.api.errors import JSON, ApiError
from chainsight.api.models import ErrorOut
from chainsight.ask import answer, places_from_fences, understand
from chainsight.geofence import FenceError, FenceSet

router = APIRouter(tags=["ask"])
MAX_BODY = 16 * 1024
MAX_QUESTION = 500  # characters
_lock = threading.Lock()


class AskIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"q": "哪些冷链订单现在温度异常?"}, {"q": "how many critical alerts are open?"}]})

    q: str = Field(min_length=1, max_length=MAX_QUESTION, description="the question")
    tz: str = Field(default="UTC", max_length=64,
                    description="the asker's time zone (IANA), for today / 昨天")


class AskOut(BaseModel):
    understood: bool
    interpretation: dict = Field(description="the query run: entity, aggregation, filters, "
                                             "time_range (and language)")
    answer: str
    shipment_ids: list[str]
    count: int


_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": AskIn.model_json_schema(), "example": {"q": "SHP-000123 什么时候到?"}}}}}


@router.post("/v1/ask", response_model=AskOut, openapi_extra=_BODY_DOC,
             responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut},
                        422: {"model": ErrorOut}})
async def ask(request: Request,
              principal: Annotated[Principal, Depends(need("shipments:read"))]) -> JSON:
    body = parse_json(await read_capped(request, MAX_BODY))
    try:
        question = AskIn.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise ApiError(422, f"{where}: {first['msg']}" if where else
                       'expected {"q": "a question"}') from None
    try:
        ZoneInfo(question.tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ApiError(422, f"tz: unknown time zone {question.tz!r}") from None
    return JSON(await run_in_threadpool(reply, context(request), principal, question))


def reply(ctx: Context, principal: Principal, question: AskIn) -> dict:
    """Understand the question and answer it over what the principal may see."""
    backend = ctx.backend
    shipments = scoped(backend, principal, list(backend.shipments().values()))
    alerts = scoped(backend, principal, backend.alerts())
    stream = backend.stream_time()
    now = datetime.fromtimestamp(stream / 1000, UTC) if stream > 0 else datetime.now(UTC)
    fences = backend.fences()
    interpretation = understand(question.q, now, places_from_fences(fences), backend.profiles,
                                [s["shipment_id"] for s in shipments], question.tz)
    if interpretation.understood and interpretation.aggregation == "temperature_history":
        wanted = set(interpretation.filters["shipment_id"])
        shipments = [{**s, "history": backend.history(s["shipment_id"])}
                     for s in shipments if s["shipment_id"] in wanted]

    def locate(found: Sequence[dict], place_ids: Sequence[str]) -> set[str]:
        return inside(fences, found, place_ids)

    return answer(interpretation, shipments, alerts, locate=locate)


_compiled: list[tuple[dict, FenceSet]] = []  # the fences last compiled (replaced by PUT)


def fence_set(fences: dict) -> FenceSet:
    with _lock:
        if not _compiled or _compiled[0][0] is not fences:
            _compiled[:] = [(fences, FenceSet.from_geojson(fences))]
        return _compiled[0][1]


def inside(fences: dict, shipments: Sequence[dict], place_ids: Sequence[str]) -> set[str]:
    """The shipments whose last position is inside one of the fences `place_ids`."""
    try:
        compiled = fence_set(fences)
    except FenceError:
        return set()
    placed = [s for s in shipments if s.get("last_position")]
    if not placed:
        return set()
    lon = [s["last_position"]["lon"] for s in placed]
    lat = [s["last_position"]["lat"] for s in placed]
    points, numbers = compiled.contains(lon, lat)
    wanted = {compiled.find(pid) for pid in place_ids}
    return {placed[p]["shipment_id"] for p, n in zip(points.tolist(), numbers.tolist(),
                                                      strict=True) if n in wanted}
