"""EPCIS 2.0 (GS1) JSON-LD: a shipment's record as an EPCIS document, and capture documents
from GS1-speaking systems as contract events.

Export (`document`): order status changes and scans become ObjectEvents with CBV business
steps and dispositions (the lot's certificates as `certificationInfo` on commissioning); sensor
readings are summarised per custody period (between two scans) and device as `sensorReport`s
with min/max/mean, each alert raised in the period added as an `ALARM_CONDITION` report, the
period `non_conformant` when one was. `readings="each"` reports every reading instead. The
shipment is its SSCC as an EPC URN when it has one (`urn:chainsight:shipment:{id}` otherwise),
the goods their GTIN/lot class. GPS fixes are not exported (EPCIS locates events by site).
`eventID` is a hash of the event (`ni:///sha-256;…`), not GS1's canonical event hash.

Capture (`capture`): ObjectEvents whose business step is a scan step become scans, sensor
elements with a time and a value become readings; anything else is rejected per event, with
the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from hashlib import sha256
from urllib.parse import quote, unquote

import numpy as np

from chainsight.contract.times import iso, parse_time
from chainsight.trace.chain import canonical
from chainsight.trace.gs1 import lgtin_class, sscc_of_urn, sscc_urn
from chainsight.trace.record import alert_records, business_events
from chainsight.trace.record import readings as recorded_readings

CONTEXT = ["https://ref.gs1.org/standards/epcis/epcis-context.jsonld"]
SCAN_STEPS = {"received": ("receiving", "in_progress"), "put_away": ("storing", "in_progress"),
              "picked": ("picking", "in_progress"), "packed": ("packing", "in_progress"),
              "loaded": ("loading", "in_transit"), "unloaded": ("unloading", "in_progress"),
              "delivered": ("arriving", "in_progress")}
ORDER_STEPS = {"created": ("commissioning", "active"), "allocated": ("reserving", "reserved"),
               "shipped": ("shipping", "in_transit"), "in_transit": ("transporting", "in_transit"),
               "delivered": ("accepting", "in_progress"), "cancelled": ("void_shipping",
                                                                        "inactive")}
STEP_OF_BIZSTEP = {biz: step for step, (biz, _) in SCAN_STEPS.items()}
OURS = "urn:chainsight:"
EXCURSIONS = ("temperature_excursion", "humidity_excursion")


def _urn(kind: str, value: str) -> str:
    return f"{OURS}{kind}:{quote(value, safe='')}"


def _of_urn(kind: str, uri: str) -> str:
    """Our id in a `urn:chainsight:{kind}:` URI; other URIs as they are."""
    prefix = f"{OURS}{kind}:"
    return unquote(uri[len(prefix):]) if uri.startswith(prefix) else uri


def _event(event: dict) -> dict:
    event["eventID"] = f"ni:///sha-256;{sha256(canonical(event)).hexdigest()}?ver=CBV2.0"
    return event


def _object_event(ts: int, what: dict, biz_step: str, disposition: str,
                  action: str = "OBSERVE", **extra: object) -> dict:
    return _event({"type": "ObjectEvent", "eventTime": iso(ts), "eventTimeZoneOffset": "+00:00",
                   **what, "action": action, "bizStep": biz_step, "disposition": disposition,
                   **extra})


def _stats(values: np.ndarray) -> dict | None:
    values = values[~np.isnan(values)]
    if not len(values):
        return None
    return {"minValue": float(values.min()), "maxValue": float(values.max()),
            "meanValue": round(float(values.mean()), 3)}


def _reports(temp: np.ndarray, humidity: np.ndarray) -> list[dict]:
    reports = []
    for kind, uom, values in (("Temperature", "CEL", temp), ("RelativeHumidity", "P1", humidity)):
        stats = _stats(values)
        if stats is not None:
            reports.append({"type": kind, **stats, "uom": uom})
    return reports


def _each(device: str, ts: np.ndarray, temp: np.ndarray, humidity: np.ndarray) -> list[dict]:
    elements = []
    for t, c, h in zip(ts.tolist(), temp.tolist(), humidity.tolist(), strict=True):
        reports = [{"type": kind, "value": v, "uom": uom}
                   for kind, uom, v in (("Temperature", "CEL", c), ("RelativeHumidity", "P1", h))
                   if v == v]
        if reports:
            elements.append({"sensorMetadata": {"time": iso(t), "deviceID": device},
                             "sensorReport": reports})
    return elements


def _readings(entries: list[dict]) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Sensor readings of the record by device: (ts, temp_c, humidity_pct), in time order."""
    sensor = recorded_readings(entries).of_type(1)
    out = {}
    for device in dict.fromkeys(sensor.device.tolist()):
        mine = sensor.device == device
        out[device] = (sensor.ts[mine], sensor.a[mine], sensor.b[mine])
    return out


def document(shipment_id: str, info: dict, entries: list[dict], now: int,
             readings: str = "periods", prefix_digits: int = 7) -> dict:
    """A shipment's record (entries as the record keeps them) as an EPCIS 2.0 document.
    `info`: the shipment's `sscc`, `gtin` and `lot` (`{"lot_id", "certificates"}`), if known."""
    what: dict = {"epcList": [sscc_urn(info["sscc"], prefix_digits) if info.get("sscc")
                              else _urn("shipment", shipment_id)]}
    lot = info.get("lot") or {}
    if info.get("gtin"):
        what["quantityList"] = [{"epcClass": lgtin_class(info["gtin"], lot.get("lot_id"),
                                                         prefix_digits)}]
    business = sorted(business_events(entries), key=lambda event: event["ts"])
    alerts = alert_records(entries)
    events = []
    for event in business:
        if event["type"] == "scan":
            biz_step, disposition = SCAN_STEPS[event["step"]]
            site = {"id": _urn("site", event["site_id"])}
            events.append(_object_event(event["ts"], what, biz_step, disposition,
                                        readPoint=site, bizLocation=site))
            continue
        biz_step, disposition = ORDER_STEPS[event["status"]]
        extra: dict = {"bizTransactionList": [{"type": "po", "bizTransaction":
                                               _urn("order", event["order_id"])}]}
        if event["status"] == "created" and lot.get("certificates"):
            extra["certificationInfo"] = [_urn("certificate", f"{c['kind']}/{c['issuer']}/"
                                               f"{c['id']}") for c in lot["certificates"]]
        events.append(_object_event(event["ts"], what, biz_step, disposition,
                                    "ADD" if event["status"] == "created" else "OBSERVE",
                                    **extra))
    events += _sensor_events(what, business, alerts, _readings(entries), readings)
    events.sort(key=lambda e: e["eventTime"])
    return {"@context": CONTEXT, "type": "EPCISDocument", "schemaVersion": "2.0",
            "creationDate": iso(now), "epcisBody": {"eventList": events}}


def _sensor_events(what: dict, business: list[dict], alerts: list[dict],
                   by_device: dict[str, tuple[np.ndarray, ...]], readings: str) -> list[dict]:
    """One sensor_reporting event per custody period (between scans) that has readings."""
    bounds = [e["ts"] for e in business if e["type"] == "scan"]
    edges = np.array([-(2 ** 62), *bounds, 2 ** 62], dtype=np.int64)
    events = []
    for start, end in zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True):
        elements, last = [], None
        for device, (ts, temp, humidity) in by_device.items():
            inside = (ts >= start) & (ts < end)
            if not inside.any():
                continue
            t, c, h = ts[inside], temp[inside], humidity[inside]
            last = max(last or 0, int(t[-1]))
            uri = _urn("device", device)
            if readings == "each":
                elements += _each(uri, t, c, h)
            else:
                elements.append({"sensorMetadata": {"deviceID": uri, "startTime": iso(int(t[0])),
                                                    "endTime": iso(int(t[-1]))},
                                 "sensorReport": _reports(c, h)})
        if not elements:
            continue
        raised = [a for a in alerts if a["kind"] in EXCURSIONS and a["state"] == "open"
                  and start <= parse_time(a["at"]) < end]
        if raised and readings != "each":
            elements.append({"sensorReport": [_alarm(a) for a in raised]})
        events.append(_object_event(last, what, "sensor_reporting",
                                    "non_conformant" if raised else "conformant",
                                    sensorElementList=elements))
    return events


def _alarm(alert: dict) -> dict:
    details = alert.get("details", {})
    value = details.get("max_c", details.get("min_c", details.get("limit_c")))
    kind = "Temperature" if alert["kind"] == "temperature_excursion" else "RelativeHumidity"
    report = {"type": kind, "exception": "ALARM_CONDITION", "time": alert["at"],
              "uom": "CEL" if kind == "Temperature" else "P1"}
    if isinstance(value, int | float):
        report["value"] = value
    return report


def _bare(term: object) -> str:
    """A CBV term as its bare name (`receiving`), whichever form it was sent in."""
    text = str(term)
    for sep in ("bizstep:", "BizStep-", "/"):
        if sep in text:
            text = text.rsplit(sep, 1)[1]
    return text


def _shipment(event: dict, shipment_of_sscc: Callable[[str], str | None]) -> str | None:
    for uri in event.get("epcList") or []:
        sscc = sscc_of_urn(uri) if isinstance(uri, str) else None
        if sscc is not None:
            return shipment_of_sscc(sscc)
        if isinstance(uri, str) and uri.startswith(f"{OURS}shipment:"):
            return _of_urn("shipment", uri)
    return None


def capture(doc: object, shipment_of_sscc: Callable[[str], str | None]
            ) -> tuple[list[tuple[int, dict]], list[tuple[int, str]]]:
    """Contract events from an EPCIS 2.0 capture document: ([(index of the EPCIS event,
    event)], [(index, reason)]); `shipment_of_sscc` names the shipment an SSCC belongs to
    (asked once per SSCC: a document's events mostly name the same few)."""
    shipment_of_sscc = cache(shipment_of_sscc)
    if not isinstance(doc, dict) or doc.get("type") != "EPCISDocument":
        raise ValueError("not an EPCIS 2.0 document: expected \"type\": \"EPCISDocument\"")
    body = doc.get("epcisBody")
    event_list = body.get("eventList") if isinstance(body, dict) else None
    if not isinstance(event_list, list):
        raise ValueError("an EPCIS document needs epcisBody.eventList (an array)")
    events: list[tuple[int, dict]] = []
    rejected: list[tuple[int, str]] = []
    for i, event in enumerate(event_list):
        try:
            events += [(i, e) for e in _contract_events(event, shipment_of_sscc)]
        except ValueError as exc:
            rejected.append((i, str(exc)))
    return events, rejected


def _contract_events(event: object, shipment_of_sscc: Callable[[str], str | None]) -> list[dict]:
    if not isinstance(event, dict):
        raise ValueError("an EPCIS event must be a JSON object")
    if event.get("type") != "ObjectEvent":
        raise ValueError(f"EPCIS {event.get('type')} is not supported: only ObjectEvents "
                         f"(scans and sensor reports) are captured")
    shipment = _shipment(event, shipment_of_sscc)
    if shipment is None:
        raise ValueError("the event names no shipment this server knows (epcList: an SSCC of "
                         "an order, or urn:chainsight:shipment:ID)")
    event_id = event.get("eventID")
    elements = event.get("sensorElementList")
    if elements:
        readings = _sensor_readings(elements, shipment, event_id)
        if not readings:
            raise ValueError("the sensor report has no readings with a time and a value "
                             "(summaries are not captured)")
        return readings
    biz_step = _bare(event.get("bizStep"))
    step = STEP_OF_BIZSTEP.get(biz_step)
    if step is None:
        raise ValueError(f"bizStep {biz_step} does not map to a scan step (one of "
                         f"{', '.join(sorted(STEP_OF_BIZSTEP))})")
    location = event.get("bizLocation") or event.get("readPoint") or {}
    site = location.get("id") if isinstance(location, dict) else None
    if not isinstance(site, str):
        raise ValueError("a scan needs bizLocation.id or readPoint.id (the site)")
    scan = {"type": "scan", "shipment_id": shipment, "ts": event.get("eventTime"),
            "site_id": _of_urn("site", site), "step": step}
    if event_id is not None:
        scan["event_id"] = event_id
    return [scan]


def _sensor_readings(elements: object, shipment: str, event_id: object) -> list[dict]:
    readings = []
    for j, element in enumerate(elements if isinstance(elements, list) else []):
        if not isinstance(element, dict):
            continue
        meta = element.get("sensorMetadata")
        meta = meta if isinstance(meta, dict) else {}
        values: dict = {}
        reports = element.get("sensorReport")
        for report in reports if isinstance(reports, list) else []:
            if not isinstance(report, dict) or "value" not in report or report.get("exception"):
                continue
            kind = _bare(report.get("type"))
            if kind == "Temperature":
                values["temp_c"] = report["value"]
            elif kind == "RelativeHumidity":
                values["humidity_pct"] = report["value"]
            values.setdefault("ts", report.get("time"))
        ts = meta.get("time") or values.pop("ts", None)
        values.pop("ts", None)
        device = meta.get("deviceID")
        if not values or ts is None or not isinstance(device, str):
            continue
        reading = {"type": "sensor", "device_id": _of_urn("device", device), "ts": ts,
                   "shipment_id": shipment, **values}
        if isinstance(event_id, str):
            reading["event_id"] = f"{event_id}#{j}"
        readings.append(reading)
    return readings
