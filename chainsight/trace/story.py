"""What a customer's trace page shows of one shipment, from its record: the journey, the
temperature and humidity history against the profile's range with its excursions, the origin
certificates, the carbon estimate and whether the record is intact."""

from __future__ import annotations

import numpy as np

from chainsight.config import Profile
from chainsight.contract.times import iso
from chainsight.trace import carbon, epcis

MAX_POINTS = 600  # per series: enough for a phone's width


def _thin(n: int, limit: int = MAX_POINTS) -> np.ndarray:
    """Indexes of at most `limit` points spread evenly over `n`, first and last kept."""
    return np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(np.int64)) if n else \
        np.empty(0, np.int64)


def _columns(entries: list[dict], kind: int, names: tuple[str, ...]) -> list[np.ndarray]:
    """Columns `names` of the record's readings of one type (0 gps, 1 sensor), time order."""
    parts = []
    for entry in entries:
        if entry["entry"] == "readings":
            keep = np.asarray(entry["type"]) == kind
            parts.append([np.asarray(entry[n], dtype=np.float64)[keep] for n in ("ts", *names)])
    if not parts:
        return [np.empty(0) for _ in ("ts", *names)]
    columns = [np.concatenate(c) for c in zip(*parts, strict=True)]
    order = np.argsort(columns[0], kind="stable")
    return [c[order] for c in columns]


def excursions(entries: list[dict]) -> list[dict]:
    """The record's temperature and humidity excursions: kind, start, end (None while open),
    the extreme reached and the limit."""
    found: dict[str, dict] = {}
    for entry in entries:
        alert = entry.get("alert") if entry["entry"] == "alert" else None
        if alert is None or alert["kind"] not in ("temperature_excursion", "humidity_excursion"):
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
    ts, lat, lon = _columns(entries, 0, ("lat", "lon"))
    keep = ~(np.isnan(lat) | np.isnan(lon))
    ts, lat, lon = ts[keep], lat[keep], lon[keep]
    st, temp, humidity = _columns(entries, 1, ("temp_c", "humidity_pct"))
    journey, readings = _thin(len(ts)), _thin(len(st))
    lot = facts.get("lot") or {}
    measured = len(ts) >= 2
    km = carbon.track_km(lat, lon) if measured else None
    if km is None and facts.get("origin") and facts.get("destination"):
        km = carbon.great_circle_km(facts.get("mode") or "road", facts["origin"],
                                    facts["destination"])
    cold = profile is not None and profile.max_c <= 8.0
    scans = [e for e in epcis.business_events(entries) if e["type"] == "scan"]
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
                          else float(humidity[i])} for i in readings.tolist()],
        "excursions": excursions(entries),
        "origin": {"lot_id": lot.get("lot_id"), "certificates": lot.get("certificates", []),
                   "from": facts.get("origin"), "to": facts.get("destination")},
        "carbon": carbon.estimate(facts.get("mode"), facts.get("weight_kg"), km, measured,
                                  cold),
        "record": verification,
    }
