"""What a customer's trace page shows of one shipment, from its record: the journey, the
temperature and humidity history against the profile's range with its excursions, the origin
certificates, the carbon estimate and whether the record is intact."""

from __future__ import annotations

import numpy as np

from chainsight.config import Profile
from chainsight.contract.times import iso
from chainsight.trace import carbon
from chainsight.trace.record import alert_records, business_events
from chainsight.trace.record import readings as recorded_readings

MAX_POINTS = 600  # per series: enough for a phone's width


def _thin(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indexes of at most `limit` points spread evenly over `n`, first and last kept."""
    return np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64)) if n else \
        np.empty(0, np.int64)


def excursions(entries: list[dict]) -> list[dict]:
    """The record's temperature and humidity excursions: kind, start, end (None while open),
    the extreme reached and the limit."""
    found: dict[str, dict] = {}
    for alert in alert_records(entries):
        if alert["kind"] not in ("temperature_excursion", "humidity_excursion"):
            continue
        details = alert.get("details", {})
        item = found.setdefault(alert["alert_id"], {
            "kind": alert["kind"], "started_at": details.get("started_at", alert["at"]),
            "ended_at": None, "limit": details.get("limit_c", details.get("limit_pct"))})
        for name in ("max_c", "min_c", "max_pct", "min_pct"):
            if name in details:
                item["extreme"] = details[name]
        if alert["state"] == "resolved":
            item["ended_at"] = alert["at"]
    return list(found.values())


def customer_view(shipment_id: str, facts: dict, view: dict, entries: list[dict],
                  verification: dict, profile: Profile | None) -> dict:
    """The customer page's data (also its JSON form)."""
    recorded = recorded_readings(entries)
    fixes, sensor = recorded.of_type(0), recorded.of_type(1)
    keep = ~(np.isnan(fixes.a) | np.isnan(fixes.b))
    ts, lat, lon = fixes.ts[keep], fixes.a[keep], fixes.b[keep]
    st, temp, humidity = sensor.ts, sensor.a, sensor.b
    journey, shown = _thin(len(ts)), _thin(len(st))
    lot = facts.get("lot") or {}
    measured = len(ts) >= 2
    km = carbon.track_km(lat, lon) if measured else None
    if km is None and facts.get("origin") and facts.get("destination"):
        km = carbon.great_circle_km(facts.get("mode") or "road", facts["origin"],
                                    facts["destination"])
    cold = profile is not None and profile.max_c <= 8.0
    scans = [e for e in business_events(entries) if e["type"] == "scan"]
    return {
        "shipment_id": shipment_id, "status": view.get("status"), "eta": view.get("eta"),
        "last_position": view.get("last_position"), "last_temp_c": view.get("last_temp_c"),
        "profile": None if profile is None else {"name": profile.name, "min_c": profile.min_c,
                                                 "max_c": profile.max_c},
        "journey": [[round(float(lon[i]), 5), round(float(lat[i]), 5), iso(int(ts[i]))]
                    for i in journey.tolist()],
        "sites": [{"site_id": s["site_id"], "step": s["step"], "at": iso(s["ts"])}
                  for s in sorted(scans, key=lambda s: s["ts"])],
        "temperatures": [{"at": iso(int(st[i])),
                          "temp_c": None if temp[i] != temp[i] else float(temp[i]),
                          "humidity_pct": None if humidity[i] != humidity[i]
                          else float(humidity[i])} for i in shown.tolist()],
        "excursions": excursions(entries),
        "origin": {"lot_id": lot.get("lot_id"), "certificates": lot.get("certificates", []),
                   "from": facts.get("origin"), "to": facts.get("destination")},
        "carbon": carbon.estimate(facts.get("mode"), facts.get("weight_kg"), km, measured,
                                  cold),
        "record": verification,
    }
