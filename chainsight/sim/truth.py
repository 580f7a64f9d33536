"""Ground-truth document helpers and scoring of engine alerts against it."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from chainsight.contract.times import parse_time

TRUTH_NOTES = [
    "All times are event times (ISO-8601 UTC, ms). *_ms fields are the same as epoch ms.",
    "Excursion start/end are the timestamps of the first and last reading outside the "
    "profile; duration_min = end - start. Long excursions are >= 1.5x the profile's "
    "excursion_min (should_alert=true), short ones <= 0.6x (should_alert=false).",
    "expected_open_at: first reading with (ts - start) >= excursion_min; resolved_at: first "
    "reading back inside the range (null if the stream ends first).",
    "Normal readings are clipped to the profile range minus a margin, so only injected "
    "excursions ever leave the range.",
    "A reefer sensor carries at most one of: long excursion, short excursion, silence, clock "
    "skew. Excursions and silences are therefore never on a skewed clock. A tracker carries at "
    "most one of: clock skew, offline buffering. Duplicates and GPS outliers can hit any device.",
    "sensor_silence start/end: first and last missing reading; expected_alert_at = "
    "last_reading_before + 10 min (the contract's sensor_silent threshold).",
    "clock_skew: every event of the device has ts = true time + skew_s; arrival order follows "
    "true time. Trip times in 'trips' are true times (not skewed). Clocks running ahead are "
    "capped (scenario clock_skew_max_ahead_s) so that an engine whose clock is the newest event "
    "time never sees other devices' events later than the 5-minute allowed lateness because of "
    "a skewed device; it may still see them up to that cap late, and a time-driven rule such as "
    "sensor_silent may fire up to that cap early while such a device is active. Clocks running "
    "behind may exceed the allowed lateness (beyond_allowed_lateness=true: that device's own "
    "events then count as late).",
    "offline_buffer: the tracker's fixes with true time in [start, end] are held and arrive in "
    "one burst at delivered_at (in event-time order within the burst). Reefer sensors are not "
    "buffered. lateness = arrival - ts; beyond_allowed_lateness counts fixes more than 5 min "
    "late by that measure (an engine measuring against its newest event time may differ by "
    "the network latency, 0.3-2.5 s).",
    "duplicate: the same line (same event_id) is sent again delay_s after the original.",
    "gps_outlier: one fix displaced by offset_m (reported accuracy left unchanged).",
    "Reefer doors open at loading (1.5-3 min), briefly en route (40-180 s) and at unloading "
    "(1-2.5 min), always shorter than 5 min and followed by a door-closed reading. A skewed "
    "sensor's door openings are shifted against the truck's GPS by the skew, so an engine "
    "that correlates them by time may place the unloading door 'on the road'.",
    "trips.arrival_at: the truck reaches the destination point (end of route); the tracker then "
    "stays at the destination dock until shortly after the delivered scan. fence_entered_at: "
    "the true position first within the destination circle.",
]

SILENT_AFTER_MS = 10 * 60_000


def _ms(value: Any) -> int | None:
    if value is None:
        return None
    return parse_time(value) if not isinstance(value, int) else value


def _truth_items(gt: dict[str, Any], kind: str
                 ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(should-alert items, must-not-alert items) with matching windows, for ``kind``."""
    pos: list[dict[str, Any]] = []
    neg: list[dict[str, Any]] = []
    if kind == "temperature_excursion":
        for e in gt.get("excursions", []):
            end = _ms(e.get("resolved_at")) or _ms(e["end"])
            item = {"id": e["fault_id"], "shipment_id": e["shipment_id"],
                    "device_id": e.get("device_id"), "start": _ms(e["start"]),
                    "lo": _ms(e["start"]), "hi": end,
                    "expected": _ms(e.get("expected_open_at"))}
            (pos if e["should_alert"] else neg).append(item)
    elif kind == "sensor_silent":
        for f in gt.get("faults", []):
            if f["type"] != "sensor_silence":
                continue
            lo = _ms(f["last_reading_before"]) or _ms(f["start"])
            hi = _ms(f.get("first_reading_after")) or _ms(f["end"])
            item = {"id": f["fault_id"], "shipment_id": f["shipment_id"],
                    "device_id": f.get("device_id"), "start": lo, "lo": lo, "hi": hi,
                    "expected": _ms(f.get("expected_alert_at"))}
            (pos if f.get("should_alert", True) else neg).append(item)
    else:
        raise ValueError(f"score_alerts: unsupported kind {kind!r} "
                         "(temperature_excursion, sensor_silent)")
    return pos, neg


def score_alerts(ground_truth: dict[str, Any], alerts: list[dict[str, Any]],
                 kind: str = "temperature_excursion", grace_s: float = 300.0,
                 where: Callable[[dict[str, Any]], bool] | None = None) -> dict[str, Any]:
    """Precision, recall and detection delays of ``alerts`` (contract format) vs the truth.

    Alerts are counted by ``alert_id`` (the first ``open`` transition of each; later ``open``
    transitions of the same id, e.g. severity escalations, are not new alerts). An alert of
    ``kind`` matches a should-alert truth item of the same shipment
    (or device when the alert has no shipment_id) when its ``at`` lies in
    [start, end or resolution + grace_s]. Each item matches at most once; further alerts in
    the same window count as ``duplicate_alerts`` (not false positives). Alerts matching a
    must-not-alert item (short excursion) or nothing are false positives. Delays are
    ``at - start`` (and ``at - expected``) in seconds. ``where`` optionally keeps only some
    alerts (e.g. ``lambda a: a["details"].get("rule") == "continuous"``).
    """
    pos, neg = _truth_items(ground_truth, kind)
    grace = int(grace_s * 1000)
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    neg_by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for t in pos:
        by_key[t["shipment_id"]].append(t)
        if t["device_id"]:
            by_key[t["device_id"]].append(t)
    for t in neg:
        neg_by_key[t["shipment_id"]].append(t)
        if t["device_id"]:
            neg_by_key[t["device_id"]].append(t)
    opens = [a for a in alerts if a.get("kind") == kind and a.get("state", "open") == "open"
             and (where is None or where(a))]
    opens.sort(key=lambda a: _ms(a["at"]) or 0)
    first_open: dict[Any, dict[str, Any]] = {}  # one alert = one alert_id (re-opens/escalations)
    for j, a in enumerate(opens):
        first_open.setdefault(a.get("alert_id", ("no-id", j)), a)
    transitions = len(opens)
    opens = list(first_open.values())
    matched: dict[str, dict[str, Any]] = {}
    false_alerts: list[Any] = []
    dup = on_neg = 0
    for a in opens:
        at = _ms(a["at"]) or 0
        key = a.get("shipment_id") or a.get("device_id")
        cands = [t for t in by_key.get(key, []) if t["lo"] <= at <= t["hi"] + grace]
        free = [t for t in cands if t["id"] not in matched]
        if free:
            t = min(free, key=lambda t: t["lo"])
            matched[t["id"]] = {"fault_id": t["id"], "alert_id": a.get("alert_id"),
                                "shipment_id": t["shipment_id"],
                                "delay_s": (at - t["start"]) / 1000.0,
                                "delay_vs_expected_s": (at - t["expected"]) / 1000.0
                                if t["expected"] is not None else None}
        elif cands:
            dup += 1
        else:
            if any(t["lo"] <= at <= t["hi"] + grace for t in neg_by_key.get(key, [])):
                on_neg += 1
            false_alerts.append(a.get("alert_id"))
    tp, fp = len(matched), len(false_alerts)
    delays = [m["delay_s"] for m in matched.values()]
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / len(pos) if pos else 1.0
    return {
        "kind": kind,
        "truth": len(pos),
        "negatives": len(neg),
        "alerts": len(opens),
        "open_transitions": transitions,
        "true_positives": tp,
        "false_positives": fp,
        "false_negatives": len(pos) - tp,
        "duplicate_alerts": dup,
        "alerts_on_negatives": on_neg,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "delays_s": delays,
        "mean_delay_s": statistics.fmean(delays) if delays else None,
        "median_delay_s": statistics.median(delays) if delays else None,
        "max_delay_s": max(delays) if delays else None,
        "matches": sorted(matched.values(), key=lambda m: m["fault_id"]),
        "missed": sorted(t["id"] for t in pos if t["id"] not in matched),
        "false_alerts": false_alerts,
    }
