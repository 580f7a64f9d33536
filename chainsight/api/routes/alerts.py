"""`/v1/alerts`: current alerts, lifecycle actions (recorded with the token's user name) and
audit trails."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Request

from chainsight.api.auth import Principal
from chainsight.api.backend import Backend, NotApplied
from chainsight.api.context import Context, context, need, not_found, scoped
from chainsight.api.errors import JSON, ApiError
from chainsight.api.models import AcknowledgeIn, AlertOut, ErrorOut, ResolveIn
from chainsight.contract.commands import Acknowledge, CommandRefused, Resolve, UnknownAlert
from chainsight.contract.times import now_ms

router = APIRouter(tags=["alerts"])
REFUSALS = {404: {"model": ErrorOut}, 409: {"model": ErrorOut}, 422: {"model": ErrorOut},
            504: {"model": ErrorOut}}


@router.get("/v1/alerts", response_model=list[AlertOut])
def list_alerts(request: Request, principal: Annotated[Principal, Depends(need("alerts:read"))],
                state: str | None = None, kind: str | None = None,
                shipment_id: str | None = None, severity: str | None = None) -> JSON:
    backend = context(request).backend
    return JSON(scoped(backend, principal, backend.alerts(
        state=state, kind=kind, shipment_id=shipment_id, severity=severity)))


def visible_alert(backend: Backend, principal: Principal, alert_id: str) -> dict:
    """The alert's current record; 404 when unknown or not this token's to see."""
    record = backend.alert(alert_id)
    if record is None or not scoped(backend, principal, [record]):
        raise not_found("alert", alert_id)
    return record


def act(ctx: Context, principal: Principal, command: Acknowledge | Resolve) -> dict:
    """Carry out a lifecycle action; the alert's new record."""
    visible_alert(ctx.backend, principal, command.alert_id)
    try:
        return ctx.backend.apply(command)
    except UnknownAlert:
        raise not_found("alert", command.alert_id) from None
    except CommandRefused as exc:
        raise ApiError(409, str(exc)) from None
    except NotApplied as exc:
        raise ApiError(504, str(exc)) from None


@router.post("/v1/alerts/{alert_id}/acknowledge", response_model=AlertOut, responses=REFUSALS)
def acknowledge(request: Request, alert_id: str,
                principal: Annotated[Principal, Depends(need("alerts:act"))],
                body: Annotated[AcknowledgeIn | None, Body()] = None) -> JSON:
    comment = None if body is None else body.comment
    return JSON(act(context(request), principal,
                    Acknowledge(alert_id, principal.name, comment, recorded_at=now_ms())))


@router.post("/v1/alerts/{alert_id}/resolve", response_model=AlertOut, responses=REFUSALS)
def resolve(request: Request, alert_id: str, body: ResolveIn,
            principal: Annotated[Principal, Depends(need("alerts:act"))]) -> JSON:
    return JSON(act(context(request), principal,
                    Resolve(alert_id, principal.name, body.comment, recorded_at=now_ms())))


@router.get("/v1/alerts/{alert_id}/audit", response_model=list[dict],
            responses={404: {"model": ErrorOut}})
def audit(request: Request, alert_id: str,
          principal: Annotated[Principal, Depends(need("alerts:act"))]) -> JSON:
    backend = context(request).backend
    visible_alert(backend, principal, alert_id)
    return JSON(backend.audit_trail(alert_id))
