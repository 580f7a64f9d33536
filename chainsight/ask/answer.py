"""Running an `Interpretation` over plain data (shipments as `GET /v1/shipments` lists them,
alerts as `GET /v1/alerts` does) and saying the result in one or two sentences, in the
question's language. The answer is the contract's `POST /v1/ask` object."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from chainsight.ask.understand import ACTIVE, Interpretation
from chainsight.contract.times import parse_time

# shipments (with `last_position`) and place ids -> ids of the shipments inside those places
Locate = Callable[[Sequence[dict], Sequence[str]], set[str]]
SHOWN = 10  # ids named in a sentence; all are in `shipment_ids`

CAN_ASK = {
    "en": "I could not understand the question ({reason}). I can answer: where a shipment is "
          "and when it arrives (\"When will SHP-000123 arrive?\"), its temperature history, "
          "which or how many shipments are late, at risk, in transit or of a product "
          "(cold chain, frozen, pharma), and which or how many alerts there are by kind, "
          "severity, state, place and time (\"How many critical alerts are open?\").",
    "zh": "没能理解这个问题（{reason}）。可以这样问：某个订单在哪里、什么时候到"
          "（“SHP-000123 什么时候到?”）、它的温度记录；哪些或多少订单延误、有风险、在途或属于"
          "某类货品（冷链、冷冻、医药）；以及按类型、级别、状态、地点和时间查询告警"
          "（“现在有多少个严重告警未处理?”）。",
}
WORDS = {
    "en": {"shipment": "shipments", "alert": "alerts", "none": "No {noun} match{where}.",
           "count": "{n} {noun}{where}.", "list": "{n} {noun}{where}: {ids}.",
           "more": ", and {n} more",
           "sep": ", ", "where": " ({conditions})", "unknown": "I found no shipment {id}.",
           "no_readings": "{id}: no temperature readings{span}.",
           "readings": "{id}: {n} temperature readings{span}, from {lo} °C to {hi} °C, "
                       "the last {last} °C at {at}{profile}.",
           "status": "{id} is {status}{eta}{seen}{temp}{alerts}.",
           "eta": "; ETA {eta}", "seen": "; last seen {seen}{pos}", "pos": " at {lat}, {lon}",
           "temp": "; {temp} °C", "alerts": "; {n} open alert(s)", "no_status": "known",
           "profile": " (profile {profile})", "span": " between {a} and {b}"},
    "zh": {"shipment": "订单", "alert": "告警", "none": "没有符合条件的{noun}{where}。",
           "count": "共 {n} 个{noun}{where}。", "list": "共 {n} 个{noun}{where}：{ids}。",
           "more": " 等 {n} 个",
           "sep": "、", "where": "（{conditions}）", "unknown": "没有找到订单 {id}。",
           "no_readings": "{id}{span}没有温度读数。",
           "readings": "{id}{span}共 {n} 个温度读数，最低 {lo} °C，最高 {hi} °C，"
                       "最新 {last} °C（{at}）{profile}。",
           "status": "{id} 状态：{status}{eta}{seen}{temp}{alerts}。",
           "eta": "，预计到达 {eta}", "seen": "，最后更新 {seen}{pos}",
           "pos": "（{lat}, {lon}）", "temp": "，温度 {temp} °C",
           "alerts": "，{n} 条未关闭告警", "no_status": "已知", "profile": "（温度要求 {profile}）",
           "span": "在 {a} 至 {b} 之间"},
}
CONDITIONS = {
    "en": {"late": "late", "at_risk": "at risk", "has_alerts": "with open alerts",
           "no_alerts": "without open alerts", "status": "status {v}", "profile": "profile {v}",
           "alert_kind": "alerts of kind {v}", "kind": "kind {v}", "severity": "severity {v}",
           "state": "state {v}", "place": "at {v}", "shipment_id": "shipment {v}",
           "time": "{field} from {a} to {b}"},
    "zh": {"late": "延误", "at_risk": "有风险", "has_alerts": "有未关闭告警",
           "no_alerts": "没有未关闭告警", "status": "状态 {v}", "profile": "货品 {v}",
           "alert_kind": "告警类型 {v}", "kind": "类型 {v}", "severity": "级别 {v}",
           "state": "状态 {v}", "place": "地点 {v}", "shipment_id": "订单 {v}",
           "time": "{field} 在 {a} 至 {b} 之间"},
}


def answer(interpretation: Interpretation, shipments: Sequence[dict], alerts: Sequence[dict],
           language: str | None = None, locate: Locate | None = None) -> dict:
    """The contract's answer to a question understood as `interpretation`, over the
    `shipments` and `alerts` the asker may see. `locate` finds the shipments inside places
    (needed only for a place filter; without it no shipment is inside any place). For
    `temperature_history`, the shipment's dict carries its `history` (recent events)."""
    lang = language or interpretation.language
    lang = lang if lang in WORDS else "en"
    if not interpretation.understood:
        return {"understood": False, "interpretation": interpretation.as_dict(),
                "answer": CAN_ASK[lang].format(reason=interpretation.reason),
                "shipment_ids": [], "count": 0}
    query = Query(interpretation, shipments, alerts, locate)
    if interpretation.entity == "alert":
        found = query.alerts()
        ids = list(dict.fromkeys(a["shipment_id"] for a in found if a.get("shipment_id")))
        text = _summary(lang, "alert", len(found), ids, interpretation)
        return _out(interpretation, text, ids, len(found))
    found = sorted(query.shipments(), key=lambda s: s["shipment_id"])
    ids = [s["shipment_id"] for s in found]
    if interpretation.aggregation in ("status", "temperature_history"):
        (wanted,) = interpretation.filters["shipment_id"]
        if not found:
            return _out(interpretation, WORDS[lang]["unknown"].format(id=wanted), [], 0)
        say = _status if interpretation.aggregation == "status" else _readings
        return _out(interpretation, say(lang, found[0], alerts, interpretation), ids, 1)
    return _out(interpretation, _summary(lang, "shipment", len(ids), ids, interpretation),
                ids, len(ids))


def _out(interpretation: Interpretation, text: str, ids: list[str], count: int) -> dict:
    return {"understood": True, "interpretation": interpretation.as_dict(), "answer": text,
            "shipment_ids": ids, "count": count}


class Query:
    """The interpretation's filters as predicates over shipment and alert dicts."""

    def __init__(self, interpretation: Interpretation, shipments: Sequence[dict],
                 alerts: Sequence[dict], locate: Locate | None) -> None:
        self.filters = interpretation.filters
        self.window = interpretation.time_range
        self.all_shipments = shipments
        self.all_alerts = [a for a in alerts if a.get("state") != "retracted"]
        self.by_shipment: dict[str, list[dict]] = {}
        for alert in self.all_alerts:
            self.by_shipment.setdefault(alert.get("shipment_id"), []).append(alert)
        places = self.filters.get("place")
        self.inside = None if places is None else (
            locate(shipments, places) if locate is not None else set())

    def in_window(self, value: object) -> bool:
        """Whether a time (ISO text or epoch ms) falls in the time range [from, to)."""
        if self.window is None:
            return True
        try:
            t = parse_time(value)
        except (TypeError, ValueError):
            return False
        return parse_time(self.window["from"]) <= t < parse_time(self.window["to"])

    def active(self, shipment_id: str) -> list[dict]:
        return [a for a in self.by_shipment.get(shipment_id, ()) if a.get("state") in ACTIVE]

    def late(self, shipment: dict) -> bool:
        """An unresolved `eta_late` alert, or an ETA after the promised time."""
        if any(a.get("kind") == "eta_late" for a in self.active(shipment["shipment_id"])):
            return True
        eta, promised = shipment.get("eta"), shipment.get("promised_by")
        try:
            return eta is not None and promised is not None and \
                parse_time(eta) > parse_time(promised)
        except (TypeError, ValueError):
            return False

    def at_risk(self, shipment: dict) -> bool:
        """Late, or an unresolved warning or critical alert."""
        return self.late(shipment) or any(a.get("severity") in ("warning", "critical")
                                          for a in self.active(shipment["shipment_id"]))

    def shipments(self) -> list[dict]:
        f, field = self.filters, (self.window or {}).get("field")
        found = []
        for s in self.all_shipments:
            sid = s["shipment_id"]
            if (("shipment_id" not in f or sid in f["shipment_id"])
                    and ("status" not in f or s.get("status") in f["status"])
                    and ("profile" not in f or s.get("profile") in f["profile"])
                    and (self.inside is None or sid in self.inside)
                    and ("has_alerts" not in f or bool(s.get("open_alerts")) == f["has_alerts"])
                    and (not f.get("late") or self.late(s))
                    and (not f.get("at_risk") or self.at_risk(s))
                    and self._has_alert(sid)
                    and (field not in ("last_seen", "eta") or self.in_window(s.get(field)))):
                found.append(s)
        return found

    def _has_alert(self, shipment_id: str) -> bool:
        """The shipment has an alert of the kinds and severities asked for: unresolved, or
        (with a time range on alerts) one at that time."""
        kinds, severities = self.filters.get("alert_kind"), self.filters.get("severity")
        if kinds is None and severities is None:
            return True
        timed = (self.window or {}).get("field") == "alert_at"
        pool = self.by_shipment.get(shipment_id, ()) if timed else self.active(shipment_id)
        return any((kinds is None or a.get("kind") in kinds)
                   and (severities is None or a.get("severity") in severities)
                   and (not timed or self.in_window(a.get("at"))) for a in pool)

    def alerts(self) -> list[dict]:
        f = self.filters
        profiles = {s["shipment_id"]: s.get("profile") for s in self.all_shipments}
        return [a for a in self.all_alerts
                if ("kind" not in f or a.get("kind") in f["kind"])
                and ("severity" not in f or a.get("severity") in f["severity"])
                and ("state" not in f or a.get("state") in f["state"])
                and ("shipment_id" not in f or a.get("shipment_id") in f["shipment_id"])
                and ("profile" not in f or profiles.get(a.get("shipment_id")) in f["profile"])
                and (self.inside is None or a.get("fence_id") in f["place"]
                     or a.get("shipment_id") in self.inside)
                and self.in_window(a.get("at"))]


def _summary(lang: str, entity: str, n: int, ids: list[str],
             interpretation: Interpretation) -> str:
    words = WORDS[lang]
    said = {"n": n, "noun": words[entity], "where": _conditions(lang, interpretation)}
    if n == 0:
        return words["none"].format(**said)
    if interpretation.aggregation == "count" or not ids:
        return words["count"].format(**said)
    shown = words["sep"].join(ids[:SHOWN])
    if len(ids) > SHOWN:
        shown += words["more"].format(n=len(ids) - SHOWN)
    return words["list"].format(ids=shown, **said)


def _conditions(lang: str, interpretation: Interpretation) -> str:
    """The filters and time range, said back, so the asker sees how they were understood."""
    said, table = [], CONDITIONS[lang]
    for key, value in interpretation.filters.items():
        if key in ("late", "at_risk"):
            said.append(table[key])
        elif key == "has_alerts":
            said.append(table["has_alerts" if value else "no_alerts"])
        else:
            said.append(table[key].format(v="/".join(map(str, value))))
    window = interpretation.time_range
    if window is not None:
        said.append(table["time"].format(field=window["field"], a=window["from"],
                                         b=window["to"]))
    sep = "; " if lang == "en" else "；"
    return WORDS[lang]["where"].format(conditions=sep.join(said)) if said else ""


def _status(lang: str, shipment: dict, alerts: Sequence[dict],
            interpretation: Interpretation) -> str:
    w = WORDS[lang]
    position = shipment.get("last_position") or {}
    pos = w["pos"].format(lat=position["lat"], lon=position["lon"]) if position else ""
    temp = shipment.get("last_temp_c")
    open_alerts = shipment.get("open_alerts") or []
    return w["status"].format(
        id=shipment["shipment_id"],
        status=(shipment.get("status") or w["no_status"]).replace("_", " "),
        eta=w["eta"].format(eta=shipment["eta"]) if shipment.get("eta") else "",
        seen=w["seen"].format(seen=shipment["last_seen"], pos=pos)
        if shipment.get("last_seen") else "",
        temp=w["temp"].format(temp=temp) if temp is not None else "",
        alerts=w["alerts"].format(n=len(open_alerts)) if open_alerts else "")


def _readings(lang: str, shipment: dict, alerts: Sequence[dict],
              interpretation: Interpretation) -> str:
    w, window = WORDS[lang], interpretation.time_range
    span = "" if window is None else w["span"].format(a=window["from"], b=window["to"])
    query = Query(interpretation, (), (), None)
    readings = [e for e in shipment.get("history") or ()
                if e.get("type") == "sensor" and isinstance(e.get("temp_c"), int | float)
                and not isinstance(e.get("temp_c"), bool) and _timed(e.get("ts"))
                and query.in_window(e.get("ts"))]
    sid = shipment["shipment_id"]
    if not readings:
        return w["no_readings"].format(id=sid, span=span)
    temps = [e["temp_c"] for e in readings]
    latest = max(readings, key=lambda e: parse_time(e["ts"]))
    profile = shipment.get("profile")
    return w["readings"].format(id=sid, n=len(readings), span=span, lo=min(temps),
                                hi=max(temps), last=latest["temp_c"], at=latest["ts"],
                                profile=w["profile"].format(profile=profile) if profile else "")


def _timed(value: object) -> bool:
    try:
        parse_time(value)
    except (TypeError, ValueError):
        return False
    return True
