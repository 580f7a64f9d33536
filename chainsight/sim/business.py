"""Business events (orders, warehouse RFID scans) and the per-trip ground truth."""

from __future__ import annotations

from typing import Any

import numpy as np

from chainsight.contract.events import SCAN_STEPS

from .encode import iso_strings
from .fleet import Fleet

SCAN_STEPS_ORIGIN = SCAN_STEPS[:SCAN_STEPS.index("loaded") + 1]  # at the origin hub
ORDER_FLOW = ("created", "allocated", "shipped", "in_transit", "delivered")
CANCELLED_FLOW = ("created", "allocated", "cancelled")
CERTS = {
    "pharma_2_8": (("GDP", "IGJ"), ("CoA", "QP release")),
    "frozen": (("HACCP", "SGS"), ("IFS Food", "TUV SUD")),
    "chilled_food": (("HACCP", "Bureau Veritas"), ("BRCGS", "DNV")),
    "ambient": (("ISO 9001", "Lloyd's Register"),),
}
OTHER_CERTS = (("ISO 9001", "Lloyd's Register"),)  # profiles other than the built-ins


def business_events(f: Fleet) -> tuple[list[dict[str, Any]], np.ndarray, np.ndarray,
                                       list[dict[str, Any]]]:
    """-> (order/scan events inside the window, their true times, arrival times, trip truth).

    Every order event carries the full order (profile, promise, origin/destination, lot with
    certificates, ``device_ids`` linking the tracker and reefer sensor).
    """
    scn, world = f.scn, f.world
    end = scn.end_ms
    iso = {k: iso_strings(v) for k, v in f.tl.items()}
    fmt = iso if scn.ts_format == "iso" else {k: v.tolist() for k, v in f.tl.items()}
    tl = {k: v.tolist() for k, v in f.tl.items()}
    pos = [{"lat": round(s.lat, 6), "lon": round(s.lon, 6)} for s in world.sites]
    w = f.id_digits
    origin, dest = f.origin.tolist(), f.dest.tolist()
    cancelled_all, weight = f.cancelled.tolist(), f.weight.tolist()
    latency, lot_suffix, cert_id = (f.misc_latency.tolist(), f.lot_suffix.tolist(),
                                    f.cert_id.tolist())
    events: list[dict[str, Any]] = []
    true_ts: list[int] = []
    arrival: list[int] = []
    trips: list[dict[str, Any]] = []
    for i in range(f.n):
        num, sid = i + 1, f.shp[i + 1]
        o, d = origin[i], dest[i]
        o_site, d_site = world.sites[o], world.sites[d]
        prof = f.profiles[i]
        certs = [{"kind": k, "issuer": iss, "id": f"{k.split()[0].upper()}-{cert_id[i][j]}"}
                 for j, (k, iss) in enumerate(CERTS.get(prof, OTHER_CERTS))]
        order = {
            "order_id": f"ORD-{num:0{w}d}", "shipment_id": sid,
            "customer_id": d_site.site_id, "product_profile": prof,
            "promised_by": fmt["promised"][i],
            "origin": dict(pos[o]), "destination": dict(pos[d]),
            "origin_site": o_site.site_id, "destination_site": d_site.site_id,
            "weight_kg": weight[i], "mode": "road",
            "lot": {"lot_id": f"LOT-{num:0{w}d}-{lot_suffix[i]:06d}", "certificates": certs},
            "device_ids": [f.trk[num], f.rfr[num]],
            "corridor_id": f.routes[i].corridor_id,
        }
        cancelled = cancelled_all[i]
        lat_i = latency[i]
        j = 0
        for status in CANCELLED_FLOW if cancelled else ORDER_FLOW:
            key = "order_delivered" if status == "delivered" else status
            t = tl[key][i]
            if t < end:
                events.append({"type": "order", "event_id": f"{sid}-order-{status}",
                               "ts": fmt[key][i], "status": status, **order})
                true_ts.append(t)
                arrival.append(t + lat_i[j])
            j += 1
        for k, step in enumerate(() if cancelled else SCAN_STEPS):
            t = tl[step][i]
            if t >= end:
                break
            at = o if k < len(SCAN_STEPS_ORIGIN) else d
            site = world.sites[at]
            events.append({"type": "scan", "event_id": f"{sid}-scan-{step}", "shipment_id": sid,
                           "ts": fmt[step][i], "site_id": site.site_id, "step": step,
                           "reader_id": f"{site.site_id}-RDR-{k + 1:02d}", **pos[at]})
            true_ts.append(t)
            arrival.append(t + lat_i[j + k])
        trips.append(_trip_record(f, i, iso, tl, end))
    return events, np.array(true_ts, dtype=np.int64), np.array(arrival, dtype=np.int64), trips


def _trip_record(f: Fleet, i: int, iso: dict[str, list[str]], tl: dict[str, list[int]],
                 end: int) -> dict[str, Any]:
    num = i + 1
    route = f.routes[i]
    d_site = f.world.sites[int(f.dest[i])]
    rec: dict[str, Any] = {
        "shipment_id": f.shp[num], "tracker_id": f.trk[num], "sensor_id": f.rfr[num],
        "profile": f.profiles[i], "origin_id": f.world.sites[int(f.origin[i])].site_id,
        "destination_id": d_site.site_id, "destination_kind": d_site.kind,
        "route_id": route.route_id, "corridor_fence_id": route.corridor_id,
        "route_km": round(route.length_m / 1000, 3),
        "created_at": iso["created"][i], "promised_by": iso["promised"][i],
        "cancelled": bool(f.cancelled[i]),
    }
    if f.cancelled[i]:
        rec["cancelled_at"] = iso["cancelled"][i]
        return rec
    arr = tl["arrive"][i]
    rec.update({
        "loaded_at": iso["loaded"][i], "departed_at": iso["shipped"][i],
        "fence_entered_at": iso["fence_in"][i],
        "arrival_at": iso["arrive"][i], "arrival_at_ms": arr, "arrived_in_window": arr < end,
        "delivered_at": iso["delivered"][i],
        "delivered_in_window": tl["delivered"][i] < end,
        "late": arr > tl["promised"][i],
    })
    return rec
