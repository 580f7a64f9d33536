"""Traceability: a shipment's tamper-evident record and its EPCIS form, customer trace links
with their QR codes, and the customer page those links open (`/trace/{token}`, and the GS1
Digital Link form `/00/{sscc}?t={token}`)."""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import HTMLResponse, Response

from chainsight.api import trace_page
from chainsight.api.auth import Principal
from chainsight.api.context import Context, context, need, not_found, visible
from chainsight.api.errors import JSON, ApiError, error
from chainsight.api.models import ErrorOut
from chainsight.contract.times import iso, now_ms
from chainsight.trace import epcis, story
from chainsight.trace.links import LinkRefused, link_url, qr_svg
from chainsight.trace.record import verify

router = APIRouter(tags=["traceability"])
DAY_S = 86_400


def _recorded(ctx: Context, shipment_id: str, principal: Principal | None = None
              ) -> tuple[dict, dict, list[dict], dict]:
    """(order facts, live item, record entries, verification) of a shipment the caller may
    see; 404 otherwise."""
    found = ctx.backend.recorded(shipment_id)
    if found is None or (principal is not None
                         and not visible(ctx.backend, principal, shipment_id)):
        raise not_found("shipment", shipment_id)
    return found.facts, found.item, found.entries, verify(found.entries, found.length,
                                                          found.head)


@router.get("/v1/shipments/{shipment_id}/record", responses={404: {"model": ErrorOut}},
            summary="The shipment's tamper-evident record and its verification")
def record(request: Request, shipment_id: str,
           principal: Annotated[Principal, Depends(need("records:read"))]) -> JSON:
    ctx = context(request)
    _, _, entries, verification = _recorded(ctx, shipment_id, principal)
    anchored = ctx.backend.anchor(shipment_id)
    if anchored is not None:  # the anchored head must be the hash of that entry of the record
        _, count, head = anchored["leaf"]
        anchored["matches_record"] = 0 < count <= len(entries) and \
            entries[count - 1]["hash"] == head
    return JSON({"shipment_id": shipment_id, "verification": verification,
                 "anchor": anchored, "entries": entries})


@router.get("/v1/shipments/{shipment_id}/epcis", responses={404: {"model": ErrorOut}},
            summary="The shipment's record as an EPCIS 2.0 JSON-LD document")
def epcis_document(request: Request, shipment_id: str,
                   principal: Annotated[Principal, Depends(need("records:read"))],
                   readings: Annotated[Literal["periods", "each"], Query(
                       description="sensor readings summarised per custody period, or each")]
                   = "periods") -> Response:
    facts, _, entries, _ = _recorded(context(request), shipment_id, principal)
    doc = epcis.document(shipment_id, facts, entries, now_ms(), readings)
    return JSON(doc, media_type="application/ld+json")


@router.get("/v1/shipments/{shipment_id}/trace-link", responses={404: {"model": ErrorOut}},
            summary="A customer link to the shipment's trace page, and its QR code")
def trace_link(request: Request, shipment_id: str,
               principal: Annotated[Principal, Depends(need("trace-link"))],
               days: Annotated[int, Query(ge=1, le=3650, description="valid for")] = 90
               ) -> JSON:
    ctx = context(request)
    facts = ctx.backend.order_facts(shipment_id)
    if facts is None or not visible(ctx.backend, principal, shipment_id):
        raise not_found("shipment", shipment_id)
    expires_at = int(time.time()) + days * DAY_S
    token = request.app.state.trace_keys.sign(shipment_id, expires_at)
    url = link_url(ctx.public_url or str(request.base_url), token, facts.get("sscc"))
    return JSON({"url": url, "expires_at": iso(expires_at * 1000), "qr_svg": qr_svg(url)})


def _customer_page(request: Request, token: str, sscc: str | None = None) -> Response:
    ctx = context(request)
    wants_json = "application/json" in request.headers.get("accept", "")
    lang = trace_page.language(request.headers.get("accept-language"))
    try:
        link = request.app.state.trace_keys.open(token, time.time())
        facts, view, entries, verification = _recorded(ctx, link.shipment_id)
        if sscc is not None and facts.get("sscc") != sscc:
            raise LinkRefused("this trace link belongs to another parcel")
    except (LinkRefused, ApiError) as exc:
        reason = str(exc) if isinstance(exc, LinkRefused) else \
            "this trace link names a shipment this server does not know"
        if wants_json:
            return error(403, reason)
        return HTMLResponse(trace_page.refused(reason, lang), status_code=403)
    profile = ctx.backend.profiles.get(facts.get("profile") or "")
    data = story.customer_view(link.shipment_id, facts, view, entries, verification, profile)
    if wants_json:
        return JSON(data)
    return HTMLResponse(trace_page.render(data, lang, trace_page.places(ctx.backend.fences())))


@router.get("/trace/{token}", summary="A customer's trace page (HTML, or JSON on request)",
            responses={403: {"model": ErrorOut}})
def trace(request: Request, token: str) -> Response:
    return _customer_page(request, token)


@router.get("/00/{sscc}", summary="GS1 Digital Link of a logistic unit: its trace page",
            responses={403: {"model": ErrorOut}})
def digital_link(request: Request, sscc: str,
                 t: Annotated[str | None, Query(description="the trace link's token")] = None
                 ) -> Response:
    return _customer_page(request, t or "", sscc)
