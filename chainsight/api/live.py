"""Websockets: `/v1/live` (the shipments' state, then updates and their alerts) and
`/v1/alerts/live` (alert records only).

The backend's subscriber (`Hub.on_delta`, on the backend's thread) only puts into each
client's bounded pending maps, the latest view per shipment and the latest record per alert,
and wakes the client's sender task. The sender sends what is pending
whenever the client takes it, so a slow client gets the latest state rather than a backlog,
and never holds up the engine or the other clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import OrderedDict

import orjson
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.concurrency import run_in_threadpool

from chainsight.api.auth import Principal, authenticate
from chainsight.api.backend import Backend, Customers, Delta
from chainsight.api.context import context
from chainsight.api.errors import ApiError, error
from chainsight.api.routes.shipments import BBox, in_bbox, parse_bbox

MAX_PENDING = 10_000  # per client: shipments, and alerts, waiting to be sent
KEEPALIVE = orjson.dumps({"type": "keepalive"}).decode()

router = APIRouter()


class Client:
    """One websocket's filter and what is waiting to be sent to it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, principal: Principal, state: bool,
                 ids: frozenset[str] | None = None, bbox: BBox | None = None) -> None:
        self.loop, self.principal, self.state = loop, principal, state
        self.ids, self.bbox = ids, bbox
        self.inside: set[str] = set()  # bbox: the shipments last seen inside it
        self.views: OrderedDict[str, dict] = OrderedDict()
        self.alerts: OrderedDict[str, dict] = OrderedDict()
        self.dropped = 0  # pending items dropped because the client took too long
        self.wake = asyncio.Event()
        self._lock = threading.Lock()
        self._signalled = False

    def follows(self, shipment_id: str | None, customers: dict[str, str | None]) -> bool:
        """Whether this client is shown this shipment (and its alerts)."""
        if self.principal.customers and (shipment_id is None or not self.principal.sees(
                customers.get(shipment_id))):
            return False
        if not self.state or (self.ids is None and self.bbox is None):
            return True
        return shipment_id in (self.inside if self.ids is None else self.ids)

    def select(self, items: dict[str, dict], alerts: list[dict],
               customers: dict[str, str | None]) -> tuple[list[dict], list[dict]]:
        """What of an output this client is shown (engine thread). A shipment leaving the
        bbox is sent once more, as it leaves."""
        scoped = self.principal.customers
        if not scoped and self.state and self.ids is None and self.bbox is None:
            return list(items.values()), alerts  # all of it
        views = []
        for name, item in items.items() if self.state else ():
            if self.bbox is None:
                if self.follows(name, customers):
                    views.append(item)
            elif not scoped or self.principal.sees(customers.get(name)):
                was, inside = name in self.inside, in_bbox(item, self.bbox)
                (self.inside.add if inside else self.inside.discard)(name)
                if was or inside:
                    views.append(item)
        return views, [a for a in alerts if self.follows(a.get("shipment_id"), customers)]

    def offer(self, views: list[dict], alerts: list[dict]) -> bool:
        """Keep the latest of each shipment and alert (backend thread; never waits). Whether
        the sender is to be woken (it has not been since it last took)."""
        if not views and not alerts:
            return False
        with self._lock:
            for pending, key, new in ((self.views, "shipment_id", views),
                                      (self.alerts, "alert_id", alerts)):
                for item in new:
                    pending.pop(item[key], None)
                    pending[item[key]] = item
                while len(pending) > MAX_PENDING:
                    pending.popitem(last=False)
                    self.dropped += 1
            wake, self._signalled = not self._signalled, True
        return wake

    def take(self) -> tuple[list[dict], list[dict]]:
        with self._lock:
            views, alerts = list(self.views.values()), list(self.alerts.values())
            self.views.clear()
            self.alerts.clear()
            self._signalled = False
        return views, alerts

    def pending(self) -> int:
        with self._lock:
            return len(self.views) + len(self.alerts)


class Hub:
    """The websocket clients of one backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.clients: tuple[Client, ...] = ()  # replaced, never changed in place

    def on_delta(self, delta: Delta) -> None:
        """The backend's subscriber."""
        clients = self.clients
        if not clients or not (delta.changed or delta.alerts):
            return
        items = delta.items if delta.changed and any(c.state for c in clients) else {}
        customers = _customers(clients, delta.customers,
                               [*items, *(a.get("shipment_id") for a in delta.alerts)])
        woken: dict[asyncio.AbstractEventLoop, list[Client]] = {}
        for client in clients:
            if client.offer(*client.select(items, delta.alerts, customers)):
                woken.setdefault(client.loop, []).append(client)
        for loop, wake in woken.items():  # one call per loop: each is a syscall
            with contextlib.suppress(RuntimeError):  # the server's loop has closed
                loop.call_soon_threadsafe(_wake, wake)

    def join(self, client: Client) -> list[dict]:
        """Register a client; its snapshot, read so that nothing is missed."""

        def register(items: dict[str, dict], customers: Customers) -> list[dict]:
            snapshot, _ = client.select(items, [], _customers((client,), customers, [*items]))
            self.clients = (*self.clients, client)
            return snapshot

        return self.backend.watch(None if client.ids is None else sorted(client.ids), register)

    def leave(self, client: Client) -> None:
        self.clients = tuple(c for c in self.clients if c is not client)


def _customers(clients: tuple[Client, ...], customers: Customers,
               names: list[str | None]) -> dict[str, str | None]:
    """The customers of these shipments, when a customer-scoped client needs them."""
    if not any(c.principal.customers for c in clients):
        return {}
    return customers(n for n in names if n is not None)


def _wake(clients: list[Client]) -> None:
    for client in clients:
        client.wake.set()


async def _drain(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends, until it goes."""
    while (await ws.receive())["type"] != "websocket.disconnect":
        pass


async def _send(ws: WebSocket, client: Client, keepalive_s: float) -> None:
    while True:
        try:
            await asyncio.wait_for(client.wake.wait(), keepalive_s)
        except TimeoutError:
            await ws.send_text(KEEPALIVE)
            continue
        client.wake.clear()
        views, alerts = client.take()
        if views:
            await ws.send_text(orjson.dumps({"type": "update", "shipments": views}).decode())
        for record in alerts:
            await ws.send_text(orjson.dumps({"type": "alert", "alert": record}).decode())


async def serve(ws: WebSocket, right: str, token: str | None, state: bool,
                bbox: str | None = None, shipments: str | None = None) -> None:
    ctx, hub = context(ws), ws.app.state.hub
    try:
        principal = authenticate(ctx.tokens, token).check(right)
        box = None if not bbox else parse_bbox(bbox)
        ids = None if not shipments else frozenset(s for s in shipments.split(",") if s)
    except ApiError as exc:
        await ws.send_denial_response(error(exc.status, str(exc)))
        return
    client = Client(asyncio.get_running_loop(), principal, state, ids, box)
    await ws.accept()
    try:
        snapshot = await run_in_threadpool(hub.join, client)
        if state:
            await ws.send_text(orjson.dumps({"type": "snapshot", "shipments": snapshot}).decode())
        tasks = {asyncio.create_task(_drain(ws)),
                 asyncio.create_task(_send(ws, client, ws.app.state.keepalive_s))}
        done, rest = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in rest:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    except (WebSocketDisconnect, RuntimeError, OSError):
        pass  # the client went away
    finally:
        hub.leave(client)


@router.websocket("/v1/live")
async def live(ws: WebSocket, token: str | None = None, bbox: str | None = None,
               shipments: str | None = None) -> None:
    """Shipments (all, those in `bbox`, or those named in `shipments=a,b`): a snapshot,
    then updates and their alerts; a keepalive every ~15 s."""
    await serve(ws, "shipments:read", token, True, bbox, shipments)


@router.websocket("/v1/alerts/live")
async def alerts_live(ws: WebSocket, token: str | None = None) -> None:
    """Alert records as they are published; a keepalive every ~15 s."""
    await serve(ws, "alerts:read", token, False)
