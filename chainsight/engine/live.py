"""The live alert stream: provisional transitions at once, settled ones reconciled later.

A live runtime publishes each transition as soon as the events seen so far make it true,
marked `provisional`. When the settled (in-order) pipeline reaches it, a transition it confirms
needs no new record; one it does not confirm by the time settled event time has passed it is
withdrawn with a `retracted` record; one only the settled pipeline finds is published then,
without `provisional`. So the live stream minus its withdrawn transitions equals the settled
stream. When the provisional pipeline re-evaluates a shipment (an out-of-order event), its new
transitions for that shipment replace the unsettled ones: what disappeared is withdrawn at once,
what appeared is published.
"""

from __future__ import annotations

import heapq
from collections import Counter
from typing import NamedTuple

import orjson

from chainsight.contract.times import iso


class Published(NamedTuple):
    at: int  # event time of the transition, ms
    record: dict


def canonical(record: dict) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def group_of(record: dict) -> str:
    """What a transition belongs to: its shipment, or its device when it has none."""
    shipment = record["shipment_id"]
    return shipment if shipment is not None else f"device:{record['device_id']}"


def identity(record: dict) -> tuple[str, str, str]:
    """What a withdrawal names of the transition it withdraws."""
    return record["alert_id"], record["state"], record["at"]


def retraction(record: dict, at: int, reason: str) -> dict:
    """The record withdrawing a published transition."""
    out = {**record, "state": "retracted", "at": iso(at),
           "details": {"transition": "retracted", "reason": reason,
                       "withdraws": {"state": record["state"], "at": record["at"]}}}
    out.pop("provisional", None)
    return out


class LiveStream:
    """What has been published and not yet settled, by group (shipment)."""

    def __init__(self) -> None:
        self.unsettled: dict[str, dict[bytes, Published]] = {}
        self._due: list[tuple[int, str, bytes]] = []  # heap: when each becomes settled
        self.notified: set[tuple[str, str, str]] = set()  # (alert id, transition, at)
        self.retracted: Counter[str] = Counter()  # withdrawals by kind (and cold-chain rule)

    def publish(self, transitions: list[tuple[int, dict]], out: list[dict]) -> None:
        """Provisional transitions, published now."""
        for at, record in transitions:
            self._add(at, record)
            out.append({**record, "provisional": True})

    def rebuilt(self, groups: set[str], transitions: list[tuple[int, dict]], now: int,
                out: list[dict]) -> None:
        """A re-evaluation of `groups` found `transitions` (from the settled state on): what
        was published for them and is not found again is withdrawn, what is new published."""
        found: dict[str, dict[bytes, Published]] = {g: {} for g in groups}
        others = []
        for at, record in transitions:
            group = group_of(record)
            if group in found:
                found[group][canonical(record)] = Published(at, record)
            else:
                others.append((at, record))
        for group, new in found.items():
            old = self.unsettled.pop(group, {})
            for key, (_, record) in old.items():
                if key not in new:
                    self._withdraw(record, now, "re-evaluated with an event that arrived out "
                                                "of order", out)
            for key, (at, record) in new.items():
                if key in old:  # still unsettled, its settling time already due
                    self.unsettled.setdefault(group, {})[key] = old[key]
                else:
                    self._add(at, record)
                    out.append({**record, "provisional": True})
        self.publish(others, out)

    def settle(self, transitions: list[tuple[int, dict]], clock: int, out: list[dict],
               confirmed: list[dict], final: bool = False) -> None:
        """The settled pipeline's transitions, its event time now `clock`: each confirms the
        same provisional one, or is published; provisional ones it has passed unconfirmed (all
        of them at the end of the stream, `final`) are withdrawn."""
        for _, record in transitions:
            group, key = group_of(record), canonical(record)
            entries = self.unsettled.get(group, {})
            if entries.pop(key, None) is not None:
                confirmed.append(record)
                continue
            same = identity(record)  # published with other details: withdrawn first
            for other in [k for k, e in entries.items() if identity(e.record) == same]:
                self._withdraw(entries.pop(other).record, clock, "settled with other details",
                               out)
            out.append(record)
        due = self._due
        while due and (final or due[0][0] < clock):
            _, group, key = heapq.heappop(due)
            entry = self.unsettled.get(group, {}).pop(key, None)
            if entry is not None:
                self._withdraw(entry.record, clock, "not confirmed once the events up to its "
                                                    "time were all in", out)
            if group in self.unsettled and not self.unsettled[group]:
                del self.unsettled[group]

    def notify(self, notifications: list[dict], out: list[dict]) -> None:
        """Notifications (escalations), each published once."""
        for note in notifications:
            key = (note["alert_id"], note["details"]["transition"], note["at"])
            if key not in self.notified:
                self.notified.add(key)
                out.append(note)

    def withdrawn_notices(self, retractions: list[dict], out: list[dict]) -> None:
        """A person notified about an alert whose opening is withdrawn hears so."""
        told = {aid for aid, _, _ in self.notified}
        for record in retractions:
            if record["alert_id"] in told and record["details"]["withdraws"]["state"] == "open":
                out.append({**record, "details": {**record["details"]}})

    def _withdraw(self, record: dict, at: int, reason: str, out: list[dict]) -> None:
        rule = record["details"].get("rule")
        self.retracted[record["kind"] if rule is None else f"{record['kind']}.{rule}"] += 1
        out.append(retraction(record, at, reason))

    def is_unsettled(self, record: dict) -> bool:
        return canonical(record) in self.unsettled.get(group_of(record), {})

    def _add(self, at: int, record: dict) -> None:
        key, group = canonical(record), group_of(record)
        self.unsettled.setdefault(group, {})[key] = Published(at, record)
        heapq.heappush(self._due, (at, group, key))

    def dump_state(self) -> dict:
        return {"unsettled": [[at, record] for entries in self.unsettled.values()
                              for at, record in entries.values()],
                "notified": sorted(self.notified), "retracted": dict(self.retracted)}

    def load_state(self, data: dict) -> None:
        self.unsettled, self._due = {}, []
        for at, record in data["unsettled"]:
            self._add(at, record)
        self.notified = {tuple(key) for key in data["notified"]}
        self.retracted = Counter(data["retracted"])
