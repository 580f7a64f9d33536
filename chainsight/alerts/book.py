"""Alert bookkeeping: turns rule conditions into contract alert transitions, and runs the lifecycle.

Rules say "this condition opened / cleared at event time T"; the book knows which alerts are open,
gives each alert a deterministic id (same input, same ids) and renders the transition records.

Lifecycle (all times are event time, so a replay gives the same records):
- `open` -> `acknowledged` (by a named user) -> `resolved` (when the condition clears, or by a
  user with a comment). Every record says what happened in `details.transition`.
- A condition that returns within `quiet_ms` of its alert's automatic resolution (measured to the
  start of the new episode) continues that alert: same id, its acknowledgement and escalation kept,
  `details.reopen_count` counting the flaps.
- Severity starts at the rule's level and turns `critical` once the condition has lasted
  `critical_ms`; an alert still unacknowledged `escalate_ms` after it opened is escalated (state
  stays `open`, severity `critical`, `details.escalated: true`). Both fire as event time passes.
  A timer due at T fires before any transition of its alert later than T, and not at all when the
  alert is acknowledged or resolved at T or earlier, so batch boundaries change nothing.
- Every transition goes to the hash-chained `audit` trail.
- Memory is bounded: alerts resolved more than `retention_ms` ago (event time) are forgotten, with
  their audit entries (the alert output is the durable record).
"""

from __future__ import annotations

import copy
import heapq
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import count

from chainsight.alerts.audit import AuditTrail
from chainsight.config import MINUTE_MS, Settings
from chainsight.contract.commands import Acknowledge, CommandRefused, Resolve, UnknownAlert
from chainsight.contract.times import iso, now_ms
from chainsight.engine.state import NO_TS

GEOFENCE_KINDS = frozenset({"geofence_enter", "geofence_exit", "dwell_exceeded", "route_deviation"})
ESCALATE, CRITICAL = "escalate", "critical"
NOTIFICATIONS = frozenset({"escalated", "severity_raised"})

# kind, shipment, device, fence, rule (one rule's alerts are independent of another's)
AlertKey = tuple[str, str | None, str | None, str | None, str]


@dataclass(slots=True)
class Alert:
    alert_id: str
    key: AlertKey
    opened_at: int
    started_at: int  # start of the condition's current episode
    severity: str
    details: dict  # the rule's details of the current episode
    state: str = "open"
    lifecycle: dict = field(default_factory=dict)  # acknowledgement, escalation, flaps
    last_at: int = 0  # time of the latest transition
    resolved_at: int | None = None
    held_state: str = "open"  # the state a flap returns to
    due: dict[str, int] = field(default_factory=dict)  # timer -> event time it fires
    current: dict | None = None  # the latest record (transition or notification)

    @property
    def kind(self) -> str:
        return self.key[0]

    @property
    def shipment_id(self) -> str | None:
        return self.key[1]

    def record(self, at: str, transition: str) -> dict:
        """The contract's alert transition object for this alert's current state."""
        kind, shipment, device, fence, _ = self.key
        out = {
            "alert_id": self.alert_id,
            "kind": kind,
            "state": self.state,
            "shipment_id": shipment,
            "device_id": device,
            "severity": self.severity,
            "at": at,
            "details": {**self.details, **self.lifecycle, "transition": transition},
        }
        if kind in GEOFENCE_KINDS:
            out["fence_id"] = fence
        return out


def _dump_alert(alert: Alert) -> dict:
    return {name: getattr(alert, name) for name in Alert.__slots__}


def _load_alert(data: dict) -> Alert:
    kind, shipment, device, fence, rule = data["key"]
    return Alert(**{**data, "key": (kind, shipment, device, fence, rule)})


def alert_id(key: AlertKey, opened_at: int) -> str:
    kind, shipment, device, fence, rule = key
    text = f"{kind}|{shipment or ''}|{device or ''}|{fence or ''}|{opened_at}"
    if rule:
        text += f"|{rule}"
    return blake2b(text.encode(), digest_size=8).hexdigest()


class AlertBook:
    """Open alerts by (kind, shipment, device, fence, rule), their lifecycle and transitions."""

    def __init__(self, quiet_ms: int = 0, escalate_ms: int | None = None,
                 critical_ms: int | None = None, retention_ms: int | None = None,
                 audited: bool = True) -> None:
        """`audited=False`: no audit trail (a provisional book, whose records are redone)."""
        self.quiet_ms = quiet_ms
        self.escalate_ms = escalate_ms
        self.critical_ms = critical_ms
        self.retention_ms = retention_ms
        self.forgotten_until = NO_TS  # alerts resolved before this are forgotten
        self.open_alerts: dict[AlertKey, Alert] = {}  # not resolved (open or acknowledged)
        self.alerts: dict[str, Alert] = {}  # every alert, by id
        self.recent: dict[AlertKey, Alert] = {}  # last automatically resolved alert per key
        self.transitions: list[tuple[int, dict]] = []  # (at, record) not yet collected
        # Escalations and severity raises are notifications, not contract transitions: the
        # alert stays open, so they go out beside the alert stream (live runtimes publish them).
        self.notifications: list[tuple[int, dict]] = []
        self.audited = audited
        self.audit = AuditTrail()
        self.audit_out: list[dict] = []  # entries appended, not yet collected
        self._timers: list[tuple[int, int, str, str]] = []  # heap of (due, seq, id, timer)
        self._seq = count()

    @classmethod
    def from_settings(cls, settings: Settings, audited: bool = True) -> AlertBook:
        def ms(minutes: float | None) -> int | None:
            return None if minutes is None else int(minutes * MINUTE_MS)

        hours = settings.alert_retention_h
        return cls(int(settings.alert_quiet_min * MINUTE_MS), ms(settings.escalate_after_min),
                   ms(settings.critical_after_min), ms(None if hours is None else hours * 60),
                   audited)

    # --- what rules call -------------------------------------------------------------------

    def open(self, kind: str, shipment: str | None, device: str | None, fence: str | None,
             at: int, severity: str, details: dict, *, rule: str = "",
             started: int | None = None) -> Alert | None:
        """Open an alert unless the same condition is already open; a condition whose episode
        starts (`started`, default `at`) within the quiet period after its alert resolved
        continues that alert."""
        key = (kind, shipment, device, fence, rule)
        if key in self.open_alerts:
            return None
        started = at if started is None else started
        alert = self.recent.pop(key, None)
        if alert is not None and started - alert.resolved_at <= self.quiet_ms:
            alert.state, alert.resolved_at = alert.held_state, None
            alert.started_at, alert.details = started, details
            alert.lifecycle = {**alert.lifecycle, "reopen_count":
                               alert.lifecycle.get("reopen_count", 0) + 1,
                               "first_opened_at": iso(alert.opened_at)}
            transition = "reopened"
        else:
            alert = Alert(self._new_id(key, at), key, at, started, severity, details)
            self.alerts[alert.alert_id] = alert
            transition = "opened"
        self.open_alerts[key] = alert
        if self.critical_ms is not None and at - started > self.critical_ms:
            alert.severity = "critical"
        self._emit(alert, at, transition)
        self._schedule(alert, at)
        return alert

    def resolve(self, kind: str, shipment: str | None, device: str | None, fence: str | None,
                at: int, details: dict | None = None, *, rule: str = "") -> Alert | None:
        """Resolve the open alert of this condition, if there is one (the condition cleared)."""
        key = (kind, shipment, device, fence, rule)
        alert = self.open_alerts.get(key)
        if alert is None:
            return None
        self._catch_up(alert, at)
        del self.open_alerts[key]
        alert.held_state, alert.state, alert.resolved_at = alert.state, "resolved", at
        alert.due.clear()
        if details:
            alert.details = {**alert.details, **details}
        self.recent[key] = alert
        self._emit(alert, at, "resolved")
        return alert

    def notice(self, kind: str, shipment: str | None, device: str | None, fence: str | None,
               at: int, severity: str, details: dict) -> None:
        """A single `open` notice that never stays open (geofence enter/exit)."""
        key = (kind, shipment, device, fence, "")
        self._emit(Alert(alert_id(key, at), key, at, at, severity, details), at, "notice")

    def on_clock(self, clock: int) -> None:
        """Event time reached `clock`: fire the escalation and severity timers due before it."""
        timers = self._timers
        while timers and timers[0][0] < clock:
            due, _, aid, timer = heapq.heappop(timers)
            alert = self.alerts.get(aid)  # None: resolved long ago and forgotten
            if alert is not None and alert.due.get(timer) == due:
                self._fire(alert, timer, due)
        if self.retention_ms is not None \
                and clock - self.retention_ms - self.forgotten_until > self.retention_ms // 8:
            # every eighth of the retention: alerts live at most 9/8 of it
            self._forget_before(clock - self.retention_ms)

    def _forget_before(self, cutoff: int) -> None:
        """Forget alerts resolved before `cutoff` and the audit entries before it."""
        for aid in [a.alert_id for a in self.alerts.values()
                    if a.state == "resolved" and a.resolved_at < cutoff]:
            alert = self.alerts.pop(aid)
            if self.recent.get(alert.key) is alert:
                del self.recent[alert.key]
        self.audit.forget_before(cutoff)
        self.forgotten_until = cutoff

    def collect(self) -> tuple[list[tuple[int, dict]], list[dict], list[dict]]:
        """Transitions (with their event time in ms) and notifications since the last call,
        each in event-time order, and the audit entries appended since (with their hashes),
        in chain order."""
        out = sorted(self.transitions, key=lambda t: t[0])
        notes = [record for _, record in sorted(self.notifications, key=lambda t: t[0])]
        audit, self.audit_out = self.audit_out, []
        self.transitions, self.notifications = [], []
        return out, notes, audit

    def copy_entities(self, src: AlertBook, shipment_names: set[str],
                      device_names: set[str]) -> None:
        """Make the alerts of these shipments (and, for alerts of no shipment, of these devices)
        deep copies of `src`'s, open, recent and timers included; alerts `src` does not have go.
        Other alerts, and the transitions, notifications and audit entries not yet collected,
        stay."""
        def concerned(key: AlertKey) -> bool:
            return key[1] in shipment_names if key[1] is not None else key[2] in device_names

        gone = {aid for aid, a in self.alerts.items() if concerned(a.key)}
        self.alerts = {aid: a for aid, a in self.alerts.items() if aid not in gone}
        self.open_alerts = {k: a for k, a in self.open_alerts.items() if not concerned(k)}
        self.recent = {k: a for k, a in self.recent.items() if not concerned(k)}
        copies = {aid: copy.deepcopy(a) for aid, a in src.alerts.items() if concerned(a.key)}
        self.alerts.update(copies)
        for mine, theirs in ((self.open_alerts, src.open_alerts), (self.recent, src.recent)):
            mine.update((k, copies[a.alert_id]) for k, a in theirs.items() if concerned(k))
        timers = [t for t in self._timers if t[2] not in gone and t[2] not in copies]
        timers += [(due, next(self._seq), aid, timer)  # src's order among them kept
                   for due, _, aid, timer in sorted(src._timers) if aid in copies]
        heapq.heapify(timers)
        self._timers = timers

    # --- snapshots ---------------------------------------------------------------------------

    def dump_state(self) -> dict:
        """Alerts once each (open and recent ones by id), timers, pending records, audit."""
        seq = next(self._seq)  # reading a counter advances it: restart it where it was
        self._seq = count(seq)
        return {"alerts": [_dump_alert(a) for a in self.alerts.values()],
                "open": [a.alert_id for a in self.open_alerts.values()],
                "recent": [a.alert_id for a in self.recent.values()],
                "transitions": self.transitions, "notifications": self.notifications,
                "audit_out": self.audit_out, "timers": self._timers, "seq": seq,
                "forgotten_until": self.forgotten_until,
                "audit": self.audit.dump_state()}

    def load_state(self, data: dict) -> None:
        self.alerts = {a.alert_id: a for a in map(_load_alert, data["alerts"])}
        self.open_alerts = {(a := self.alerts[aid]).key: a for aid in data["open"]}
        self.recent = {(a := self.alerts[aid]).key: a for aid in data["recent"]}
        self.transitions = [(at, record) for at, record in data["transitions"]]
        self.notifications = [(at, record) for at, record in data["notifications"]]
        self.audit_out = data["audit_out"]
        self._timers = [(due, seq, aid, timer) for due, seq, aid, timer in data["timers"]]
        heapq.heapify(self._timers)
        self._seq = count(data["seq"])
        self.forgotten_until = data["forgotten_until"]
        self.audit.load_state(data["audit"])

    # --- what users call (through the engine) -----------------------------------------------

    def acknowledge(self, aid: str, user: str, at: int, comment: str | None = None,
                    recorded_at: int | None = None) -> dict:
        """An open alert is being handled by `user`; stops its escalation."""
        alert = self._for_user(aid, user, at)
        if alert.state != "open":
            raise CommandRefused(f"alert {aid} is {alert.state}: only an open alert can be "
                                 "acknowledged")
        alert.state = "acknowledged"
        alert.due.pop(ESCALATE, None)
        alert.lifecycle = {**alert.lifecycle, "acknowledged_by": user,
                           "acknowledged_at": iso(at)}
        if comment:
            alert.lifecycle["comment"] = comment
        return self._emit(alert, at, "acknowledged", user, comment, recorded_at=recorded_at)

    def resolve_manually(self, aid: str, user: str, comment: str, at: int,
                         recorded_at: int | None = None) -> dict:
        """`user` closes an alert whose condition may still hold; a comment says why. The
        condition's return later opens a new alert."""
        if not comment or not comment.strip():
            raise CommandRefused("a manual resolution needs a comment")
        alert = self._for_user(aid, user, at)
        if alert.state == "resolved":
            raise CommandRefused(f"alert {aid} is already resolved")
        del self.open_alerts[alert.key]
        alert.state, alert.resolved_at = "resolved", at
        alert.due.clear()
        alert.lifecycle = {**alert.lifecycle, "resolved_by": user, "comment": comment}
        return self._emit(alert, at, "resolved_manually", user, comment,
                          recorded_at=recorded_at)

    def not_applied(self, command: Acknowledge | Resolve, at: int, reason: str) -> None:
        """A user's action that came too late in event time (events that arrived late resolved
        or withdrew its alert before it): it changes nothing, but the audit trail keeps it,
        with why, as the user was told it was taken."""
        if not self.audited:
            return
        alert = self.alerts.get(command.alert_id)  # None: withdrawn, never settled
        kind, shipment, state, severity = (None,) * 4 if alert is None else \
            (alert.kind, alert.shipment_id, alert.state, alert.severity)
        entry = {"alert_id": command.alert_id, "kind": kind, "shipment_id": shipment,
                 "state": state, "severity": severity, "transition": "not_applied",
                 "who": command.user, "at": iso(at), "comment": command.comment,
                 "details": {"action": command.__struct_config__.tag, "user": command.user,
                             "comment": command.comment, "reason": reason},
                 "recorded_at": iso(now_ms() if command.recorded_at is None
                                    else command.recorded_at)}
        entry["hash"] = self.audit.append(entry, at)
        self.audit_out.append(entry)

    # --- internals ---------------------------------------------------------------------------

    def _new_id(self, key: AlertKey, at: int) -> str:
        aid = alert_id(key, at)
        while aid in self.alerts:  # the same condition opening twice in one millisecond
            aid = blake2b(aid.encode(), digest_size=8).hexdigest()
        return aid

    def _for_user(self, aid: str, user: str, at: int) -> Alert:
        alert = self.alerts.get(aid)
        if alert is None:
            raise UnknownAlert(f"unknown alert id {aid!r} (one-off notices cannot be handled)")
        if not isinstance(user, str) or not user.strip():
            raise CommandRefused("a named user is required")
        if at < alert.last_at:
            raise CommandRefused(f"alert {aid}: {iso(at)} is before its last transition at "
                                 f"{iso(alert.last_at)}")
        self._catch_up(alert, at)
        return alert

    def _emit(self, alert: Alert, at: int, transition: str, who: str = "engine",
              comment: str | None = None, at_iso: str | None = None,
              recorded_at: int | None = None) -> dict:
        record = alert.current = alert.record(at_iso or iso(at), transition)
        if who != "engine":  # a user's action: who did it and why, on this record only
            record["details"]["user"] = who
            record["details"]["comment"] = comment
        alert.last_at = at
        queue = self.notifications if transition in NOTIFICATIONS else self.transitions
        queue.append((at, record))
        if not self.audited:
            return record
        entry = {"alert_id": alert.alert_id, "kind": alert.kind,
                 "shipment_id": alert.shipment_id, "state": alert.state,
                 "severity": alert.severity, "transition": transition, "who": who,
                 "at": record["at"], "details": record["details"]}
        if who != "engine":
            entry["comment"] = comment
            # wall clock of the user's action, as the runtime received it
            entry["recorded_at"] = iso(now_ms() if recorded_at is None else recorded_at)
        entry["hash"] = self.audit.append(entry, at)
        self.audit_out.append(entry)
        return record

    def _schedule(self, alert: Alert, at: int) -> None:
        alert.due.clear()
        if self.escalate_ms is not None and alert.state == "open" \
                and not alert.lifecycle.get("escalated"):
            alert.due[ESCALATE] = at + self.escalate_ms
        if self.critical_ms is not None and alert.severity != "critical":
            alert.due[CRITICAL] = alert.started_at + self.critical_ms
        for timer, due in alert.due.items():
            heapq.heappush(self._timers, (due, next(self._seq), alert.alert_id, timer))

    def _catch_up(self, alert: Alert, at: int) -> None:
        """Fire this alert's timers due before `at`, ahead of a transition at `at`."""
        if not alert.due or min(alert.due.values()) >= at:
            return
        for due, timer in sorted((d, t) for t, d in alert.due.items()):
            if due < at and alert.due.get(timer) == due:
                self._fire(alert, timer, due)

    def _fire(self, alert: Alert, timer: str, due: int) -> None:
        del alert.due[timer]
        alert.due.pop(CRITICAL, None)  # either timer makes the alert critical
        alert.severity = "critical"
        when = iso(due)
        if timer == ESCALATE:
            alert.lifecycle = {**alert.lifecycle, "escalated": True, "escalated_at": when}
            self._emit(alert, due, "escalated", at_iso=when)
        else:
            alert.lifecycle = {**alert.lifecycle, "severity_raised_at": when}
            self._emit(alert, due, "severity_raised", at_iso=when)
