"""`/v1/webhooks`: subscribe a URL to the live alert stream, list and delete subscriptions."""

from __future__ import annotations

from typing import Annotated, get_args

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from chainsight.api.auth import Principal
from chainsight.api.context import need, not_found
from chainsight.api.errors import JSON
from chainsight.api.models import ErrorOut, Severity, WebhookIn, WebhookOut
from chainsight.api.webhooks import Webhooks

router = APIRouter(tags=["webhooks"])
SEVERITIES = get_args(Severity)  # lowest first
Allowed = Annotated[Principal, Depends(need("webhooks"))]


def webhooks(request: Request) -> Webhooks:
    return request.app.state.webhooks


@router.post("/v1/webhooks", response_model=WebhookOut, status_code=201,
             responses={422: {"model": ErrorOut}})
def create(request: Request, body: WebhookIn, principal: Allowed) -> JSON:
    """Deliver matching alert records and notifications to `url`. The `secret` (generated
    when not given) is shown in this answer only. A customer-scoped token's webhook gets only
    its customers' alerts."""
    severities = body.severities or []
    if body.min_severity is not None:
        severities = list(SEVERITIES[SEVERITIES.index(body.min_severity):])
    sub = webhooks(request).add(principal, str(body.url), body.kinds or [], severities,
                                body.secret)
    return JSON({**sub.public(), "secret": sub.secret}, status_code=201)


@router.get("/v1/webhooks", response_model=list[WebhookOut])
def list_webhooks(request: Request, principal: Allowed) -> JSON:
    return JSON([sub.public() for sub in webhooks(request).visible(principal)])


@router.delete("/v1/webhooks/{webhook_id}", status_code=204,
               responses={404: {"model": ErrorOut}})
def delete(request: Request, webhook_id: str, principal: Allowed) -> Response:
    if not webhooks(request).remove(principal, webhook_id):
        raise not_found("webhook", webhook_id)
    return Response(status_code=204)
