"""`GET /v1/shipments` and `GET /v1/shipments/{id}`: the shipments' live state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from chainsight.api.auth import Principal
from chainsight.api.context import context, need, not_found, scoped
from chainsight.api.errors import JSON, ApiError
from chainsight.api.models import ErrorOut, ShipmentDetailOut, ShipmentOut

router = APIRouter(tags=["shipments"])

BBox = tuple[float, float, float, float]


def parse_bbox(text: str) -> BBox:
    """`minLon,minLat,maxLon,maxLat`; 400 when it is not one."""
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or any(v != v for v in values):
        raise ApiError(400, "bbox must be minLon,minLat,maxLon,maxLat (four numbers)")
    min_lon, min_lat, max_lon, max_lat = values
    if not (-180 <= min_lon <= max_lon <= 180 and -90 <= min_lat <= max_lat <= 90):
        raise ApiError(400, "bbox out of range: need -180 <= minLon <= maxLon <= 180 and "
                            "-90 <= minLat <= maxLat <= 90")
    return values


def in_bbox(view: dict, bbox: BBox) -> bool:
    position = view.get("last_position")
    return position is not None and (bbox[0] <= position["lon"] <= bbox[2]
                                     and bbox[1] <= position["lat"] <= bbox[3])


@router.get("/v1/shipments", response_model=list[ShipmentOut],
            responses={400: {"model": ErrorOut}})
def list_shipments(request: Request,
                   principal: Annotated[Principal, Depends(need("shipments:read"))],
                   status: str | None = None, profile: str | None = None,
                   has_alerts: bool | None = None,
                   bbox: Annotated[str | None, Query(examples=["3.3,50.7,7.2,53.6"],
                                                     description="minLon,minLat,maxLon,maxLat")]
                   = None) -> JSON:
    box = None if bbox is None else parse_bbox(bbox)
    backend = context(request).backend
    found = [item for item in backend.shipments().values()
             if (status is None or item["status"] == status)
             and (profile is None or item["profile"] == profile)
             and (has_alerts is None or bool(item["open_alerts"]) == has_alerts)
             and (box is None or in_bbox(item, box))]
    return JSON(scoped(backend, principal, found))


@router.get("/v1/shipments/{shipment_id}", response_model=ShipmentDetailOut,
            responses={404: {"model": ErrorOut}})
def get_shipment(request: Request, shipment_id: str,
                 principal: Annotated[Principal, Depends(need("shipments:read"))]) -> JSON:
    backend = context(request).backend
    item = backend.shipments([shipment_id]).get(shipment_id)
    if item is None or not scoped(backend, principal, [item]):
        raise not_found("shipment", shipment_id)
    return JSON({**item, "history": backend.history(shipment_id)})
