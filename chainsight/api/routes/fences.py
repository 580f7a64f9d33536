"""`GET /v1/fences` and `PUT /v1/fences`: the geofences in force, replaced live."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool

from chainsight.api.auth import Principal
from chainsight.api.body import parse_json, read_capped
from chainsight.api.context import Context, context, need
from chainsight.api.errors import JSON, ApiError
from chainsight.api.models import ErrorOut, FencesOut
from chainsight.contract.commands import CommandRefused
from chainsight.geofence import FenceError, FenceSet

router = APIRouter(tags=["fences"])
_BODY_DOC = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"type": "object", "description": "a GeoJSON FeatureCollection"},
    "example": {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": {"type": "Point", "coordinates": [4.48, 51.92]},
        "properties": {"fence_id": "HUB-1", "kind": "hub", "radius_m": 300}}]}}}}}


@router.get("/v1/fences", responses={200: {"description": "a GeoJSON FeatureCollection"}})
def get_fences(request: Request, _: Annotated[Principal, Depends(need("fences:read"))]) -> JSON:
    return JSON(context(request).backend.fences())


def replace(ctx: Context, geojson: dict) -> dict:
    try:
        FenceSet.from_geojson(geojson)
    except FenceError as exc:
        raise ApiError(422, str(exc)) from None
    try:
        version = ctx.backend.replace_fences(geojson)
    except CommandRefused as exc:
        raise ApiError(422, str(exc)) from None
    return {"version": version, "fences": len(geojson.get("features", []))}


@router.put("/v1/fences", response_model=FencesOut, openapi_extra=_BODY_DOC,
            responses={400: {"model": ErrorOut}, 413: {"model": ErrorOut},
                       422: {"model": ErrorOut}})
async def put_fences(request: Request,
                     _: Annotated[Principal, Depends(need("fences:write"))]) -> JSON:
    geojson = parse_json(await read_capped(request))
    if not isinstance(geojson, dict):
        raise ApiError(422, "expected a GeoJSON FeatureCollection (a JSON object)")
    return JSON(await run_in_threadpool(replace, context(request), geojson))
