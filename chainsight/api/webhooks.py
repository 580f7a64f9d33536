"""Webhooks: subscriptions to the live alert stream (and notifications), each delivered to its
URL by a worker thread of its own.

The backend's subscriber (`Webhooks.on_delta`, on the backend's thread) only puts matching
records into each endpoint's bounded queue (the oldest dropped, and counted, when
full). The endpoint's worker POSTs one record per delivery, signed with the subscription's
secret (`X-ChainSight-Signature: sha256=<hex HMAC-SHA256 of the body>`), retries with
exponential backoff, and after the last attempt appends the delivery to the dead-letter file.
A dead or slow receiver only holds up its own worker.

Subscriptions persist in the data directory (`webhooks.json`, mode 0600: the secrets are kept
as given, they are needed to sign).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from chainsight.api.auth import Principal
from chainsight.api.backend import Delta
from chainsight.contract.times import iso, now_ms
from chainsight.files import write_private_json

MAX_QUEUE = 1000  # per endpoint: records waiting to be delivered


@dataclass(frozen=True)
class Retry:
    """How deliveries are tried: `attempts` in all, waiting `base_s`, 2×, 4×... in between."""

    attempts: int = 5
    base_s: float = 1.0
    timeout_s: float = 5.0  # per attempt: connect, and wait for the answer


@dataclass
class Subscription:
    id: str
    url: str
    secret: str
    owner: str  # the token's name
    role: str
    created_at: int  # epoch ms
    kinds: list[str] = field(default_factory=list)  # empty: every kind
    severities: list[str] = field(default_factory=list)  # empty: every severity
    customers: list[str] = field(default_factory=list)  # the token's scope; empty: all

    def public(self) -> dict:
        """What `GET /v1/webhooks` shows: everything but the secret."""
        return {k: v for k, v in asdict(self).items() if k != "secret"}

    def wants(self, record: dict, customer: str | None) -> bool:
        return ((not self.kinds or record.get("kind") in self.kinds)
                and (not self.severities or record.get("severity") in self.severities)
                and (not self.customers or customer in self.customers))


def sign(secret: str, body: bytes) -> str:
    """The signature header's value for `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Endpoint:
    """One subscription's queue, worker thread and counters."""

    def __init__(self, sub: Subscription, retry: Retry, dead_letter: DeadLetters) -> None:
        self.sub, self.retry, self.dead_letter = sub, retry, dead_letter
        self.queue: deque[dict] = deque()
        self.delivered = self.failures = self.dead = self.dropped = 0
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=f"webhook-{sub.id}", daemon=True)
        self._thread.start()

    def offer(self, payload: dict) -> None:
        """Queue a delivery (backend thread; never waits on the receiver)."""
        with self._cond:
            if len(self.queue) >= MAX_QUEUE:
                self.queue.popleft()
                self.dropped += 1
            self.queue.append(payload)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with httpx.Client(timeout=self.retry.timeout_s) as http:
            while True:
                with self._cond:
                    while not self.queue and not self._stopped:
                        self._cond.wait()
                    if self._stopped:
                        return
                    payload = self.queue.popleft()
                self._deliver(http, payload)

    def _deliver(self, http: httpx.Client, payload: dict) -> None:
        delivery = secrets.token_hex(8)
        body = orjson.dumps({"webhook_id": self.sub.id, "delivery_id": delivery, **payload})
        headers = {"content-type": "application/json", "X-ChainSight-Delivery": delivery,
                   "X-ChainSight-Signature": sign(self.sub.secret, body)}
        reason = ""
        for attempt in range(self.retry.attempts):
            if attempt:
                with self._cond:  # a wait that a deletion cuts short
                    if self._cond.wait_for(lambda: self._stopped,
                                           self.retry.base_s * 2 ** (attempt - 1)):
                        return
            try:
                answer = http.post(self.sub.url, content=body, headers=headers)
            except httpx.HTTPError as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if answer.is_success:
                    self.delivered += 1
                    return
                reason = f"HTTP {answer.status_code}"
            self.failures += 1
        self.dead += 1
        self.dead_letter.write({"webhook_id": self.sub.id, "delivery_id": delivery,
                                "url": self.sub.url, "attempts": self.retry.attempts,
                                "reason": reason, "at": iso(now_ms()), **payload})


class DeadLetters:
    """The dead-letter file (JSON Lines), appended to by every endpoint's worker."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def write(self, entry: dict) -> None:
        with self._lock:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            with os.fdopen(fd, "ab") as f:
                f.write(orjson.dumps(entry) + b"\n")


class Webhooks:
    """The subscriptions of one data directory and their endpoints."""

    def __init__(self, data_dir: Path, retry: Retry = Retry()) -> None:
        self.path = Path(data_dir) / "webhooks.json"
        self.retry = retry
        self.dead_letters = DeadLetters(Path(data_dir) / "webhooks-dead.jsonl")
        self._lock = threading.Lock()  # one change of the subscriptions at a time
        self.endpoints: dict[str, Endpoint] = {}  # replaced, never changed in place
        if self.path.exists():
            data = json.loads(self.path.read_text())
            self.endpoints = {s["id"]: self._endpoint(Subscription(**s))
                              for s in data["webhooks"]}

    def _endpoint(self, sub: Subscription) -> Endpoint:
        return Endpoint(sub, self.retry, self.dead_letters)

    def on_delta(self, delta: Delta) -> None:
        """The backend's subscriber."""
        endpoints = self.endpoints
        if not endpoints or not (delta.alerts or delta.notifications):
            return
        records = [("alert", r) for r in delta.alerts]
        records += [("notification", r) for r in delta.notifications]
        customers = {}
        if any(e.sub.customers for e in endpoints.values()):
            customers = delta.customers(r["shipment_id"] for _, r in records
                                        if r.get("shipment_id"))
        for kind, record in records:
            customer = customers.get(record.get("shipment_id"))
            for endpoint in endpoints.values():
                if endpoint.sub.wants(record, customer):
                    endpoint.offer({"type": kind, kind: record})

    def visible(self, principal: Principal) -> list[Subscription]:
        """The subscriptions this token may see: all, or for a customer-scoped token those
        within its customers."""
        return [e.sub for e in self.endpoints.values()
                if not principal.customers or (e.sub.customers and
                                               set(e.sub.customers) <= principal.customers)]

    def add(self, principal: Principal, url: str, kinds: list[str], severities: list[str],
            secret: str | None) -> Subscription:
        sub = Subscription(secrets.token_hex(4), url, secret or secrets.token_urlsafe(32),
                           principal.name, principal.role, now_ms(), list(dict.fromkeys(kinds)),
                           list(dict.fromkeys(severities)), sorted(principal.customers))
        with self._lock:
            self._save([*(e.sub for e in self.endpoints.values()), sub])
            self.endpoints = {**self.endpoints, sub.id: self._endpoint(sub)}
        return sub

    def remove(self, principal: Principal, webhook_id: str) -> bool:
        """Delete a subscription this token may see; whether there was one."""
        with self._lock:
            if webhook_id not in {s.id for s in self.visible(principal)}:
                return False
            endpoints = dict(self.endpoints)
            endpoints.pop(webhook_id).stop()
            self._save([e.sub for e in endpoints.values()])
            self.endpoints = endpoints
        return True

    def close(self) -> None:
        for endpoint in self.endpoints.values():
            endpoint.stop()

    def _save(self, subs: list[Subscription]) -> None:
        write_private_json(self.path, {"webhooks": [asdict(s) for s in subs]})

    def collect(self) -> Iterator[Metric]:
        """Per endpoint: deliveries, failed attempts, dead-lettered, dropped, queue length."""
        families = [
            (CounterMetricFamily, "deliveries", "webhook deliveries answered 2xx", "delivered"),
            (CounterMetricFamily, "failures", "webhook delivery attempts failed", "failures"),
            (CounterMetricFamily, "dead_lettered", "webhook deliveries given up", "dead"),
            (CounterMetricFamily, "dropped", "webhook records dropped, queue full", "dropped")]
        endpoints = list(self.endpoints.values())
        for family, name, help_text, attr in families:
            metric = family(f"chainsight_webhook_{name}", help_text, labels=["webhook"])
            for e in endpoints:
                metric.add_metric([e.sub.id], getattr(e, attr))
            yield metric
        queue = GaugeMetricFamily("chainsight_webhook_queue", "webhook records waiting",
                                  labels=["webhook"])
        for e in endpoints:
            queue.add_metric([e.sub.id], len(e.queue))
        yield queue
