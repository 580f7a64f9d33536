"""Alert bookkeeping: turns rule conditions into contract alert transitions with stable ids.

Rules say "this condition opened / cleared at event time T"; the book knows which alerts are open,
gives each alert a deterministic id (same input, same ids) and renders the transition records.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from hashlib import blake2b

from chainsight.events import iso

GEOFENCE_KINDS = frozenset({"geofence_enter", "geofence_exit", "dwell_exceeded", "route_deviation"})

AlertKey = tuple[str, str | None, str | None, str | None]  # kind, shipment, device, fence


@dataclass
class Alert:
    alert_id: str
    kind: str
    shipment_id: str | None
    device_id: str | None
    fence_id: str | None
    opened_at: int
    severity: str
    state: str = "open"
    details: dict = field(default_factory=dict)

    def record(self, at: int) -> dict:
        """The contract's alert transition object for this alert's current state."""
        out = {
            "alert_id": self.alert_id,
            "kind": self.kind,
            "state": self.state,
            "shipment_id": self.shipment_id,
            "device_id": self.device_id,
            "severity": self.severity,
            "at": iso(at),
            "details": self.details,
        }
        if self.kind in GEOFENCE_KINDS:
            out["fence_id"] = self.fence_id
        return out


def alert_id(kind: str, shipment: str | None, device: str | None, fence: str | None,
             opened_at: int) -> str:
    text = f"{kind}|{shipment or ''}|{device or ''}|{fence or ''}|{opened_at}"
    return blake2b(text.encode(), digest_size=8).hexdigest()


class AlertBook:
    """Open alerts by (kind, shipment, device, fence), and the transitions emitted so far."""

    def __init__(self) -> None:
        self.open_alerts: dict[AlertKey, Alert] = {}
        self.transitions: list[tuple[int, dict]] = []  # (at, record) not yet collected

    def open(self, kind: str, shipment: str | None, device: str | None, fence: str | None,
             at: int, severity: str, details: dict) -> Alert | None:
        """Open an alert unless the same condition is already open."""
        key = (kind, shipment, device, fence)
        if key in self.open_alerts:
            return None
        alert = Alert(alert_id(kind, shipment, device, fence, at), kind, shipment, device, fence,
                      at, severity, details=details)
        self.open_alerts[key] = alert
        self.transitions.append((at, alert.record(at)))
        return alert

    def resolve(self, kind: str, shipment: str | None, device: str | None, fence: str | None,
                at: int, details: dict | None = None) -> Alert | None:
        """Resolve the open alert of this condition, if there is one."""
        alert = self.open_alerts.pop((kind, shipment, device, fence), None)
        if alert is None:
            return None
        alert.state = "resolved"
        if details:
            alert.details = {**alert.details, **details}
        self.transitions.append((at, alert.record(at)))
        return alert

    def notice(self, kind: str, shipment: str | None, device: str | None, fence: str | None,
               at: int, severity: str, details: dict) -> None:
        """A single `open` notice that never stays open (geofence enter/exit)."""
        alert = Alert(alert_id(kind, shipment, device, fence, at), kind, shipment, device, fence,
                      at, severity, details=details)
        self.transitions.append((at, alert.record(at)))

    def collect(self) -> list[dict]:
        """Transitions since the last call, in event-time order (stable for ties)."""
        out = [record for _, record in sorted(self.transitions, key=lambda t: t[0])]
        self.transitions = []
        return out

    def open_for(self, shipment: str) -> list[str]:
        return [a.alert_id for a in self.open_alerts.values() if a.shipment_id == shipment]
