"""What every route works with: the runtime, the token store, the shipments' recent history,
the current fences; and the checks every route makes (token, role, customer scope)."""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from chainsight.api.auth import Principal, TokenStore, authenticate
from chainsight.api.errors import ApiError
from chainsight.contract.times import iso
from chainsight.engine.core import Engine
from chainsight.runtimes.embedded import EmbeddedRuntime


class History:
    """Recent accepted events of each shipment, as sent, newest last: at most `per_shipment`
    of each, for the `max_shipments` most recently active shipments. A resent event (same
    id, or same type, device or shipment and ts) is kept once."""

    def __init__(self, per_shipment: int = 50, max_shipments: int = 100_000) -> None:
        self.per_shipment = per_shipment
        self.max_shipments = max_shipments
        self._events: OrderedDict[str, tuple[deque[dict], set[tuple]]] = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def identity(event: dict) -> tuple:
        if event.get("event_id") is not None:
            return ("id", event["event_id"])
        return (event.get("type"), event.get("device_id") or event.get("shipment_id"),
                event.get("ts"))

    def add(self, shipment_id: str, event: dict) -> None:
        key = self.identity(event)
        with self._lock:
            recent = self._events.get(shipment_id)
            if recent is None:
                recent = self._events[shipment_id] = (deque(), set())
                if len(self._events) > self.max_shipments:
                    self._events.popitem(last=False)
            else:
                self._events.move_to_end(shipment_id)
                if key in recent[1]:
                    return
            events, keys = recent  # the identities of `events`, to find a resent one at once
            if len(events) == self.per_shipment:
                keys.discard(self.identity(events.popleft()))
            events.append(event)
            keys.add(key)

    def of(self, shipment_id: str) -> list[dict]:
        with self._lock:
            recent = self._events.get(shipment_id)
            return [] if recent is None else list(recent[0])


@dataclass
class Context:
    runtime: EmbeddedRuntime
    tokens: TokenStore
    fences: dict = field(default_factory=lambda: {"type": "FeatureCollection", "features": []})
    fences_version: int = 0
    fences_lock: threading.Lock = field(default_factory=threading.Lock)  # one PUT at a time
    public_url: str | None = None
    history: History = field(default_factory=History)
    retracted: int = 0  # retractions published on the live stream since start

    @property
    def engine(self) -> Engine:
        return self.runtime.engine


def context(connection: HTTPConnection) -> Context:
    return connection.app.state.context


_bearer = HTTPBearer(auto_error=False, description="a token from `chainsight token create`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


def need(right: str) -> Callable[..., Principal]:
    """A dependency: the request's principal, which must have `right` (401, 403 otherwise)."""

    def check(request: Request, credentials: Credentials) -> Principal:
        if credentials is None and request.headers.get("authorization"):
            raise ApiError(401, "malformed Authorization header: expected Bearer <token>")
        token = None if credentials is None else credentials.credentials
        return authenticate(context(request).tokens, token).check(right)

    return check


def visible(engine: Engine, principal: Principal, shipment_id: str | None) -> bool:
    """Whether a customer-scoped token may see this shipment (call under the runtime lock)."""
    if not principal.customers:
        return True
    return shipment_id is not None and principal.sees(engine.customer_of(shipment_id))


def shipment_item(engine: Engine, shipment_id: str, view: dict) -> dict:
    """A shipment as the API shows it: its live view, `shipment_id` and `last_seen`."""
    seen = engine.last_seen(shipment_id)
    return {"shipment_id": shipment_id, **view, "last_seen": None if seen is None else iso(seen)}


def not_found(what: str, key: str) -> ApiError:
    return ApiError(404, f"unknown {what} {key}")
