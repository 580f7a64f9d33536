"""The customer's trace page, rendered on the server: mobile-first HTML with inline SVG for the
journey (over Natural Earth land and borders, as the pages' build ships them, with the sites of
the network) and the temperature chart, so it needs no script, font or tile from anywhere.
English or Chinese, by the browser's `Accept-Language`."""

from __future__ import annotations

import json
import math
from functools import cache
from html import escape

from chainsight.api.pages import STATIC  # the pages' build: land.geojson, borders.geojson

TEXT = {
    "en": {"title": "Shipment", "status": "Status", "eta": "Expected arrival",
           "journey": "Journey", "temperature": "Temperature", "range": "allowed range",
           "excursions": "Temperature excursions", "none": "None: kept within range.",
           "from": "from", "to": "to", "open": "still open", "origin": "Origin",
           "lot": "Lot", "certificates": "Certificates", "carbon": "Carbon footprint",
           "carbon_missing": "Not enough data to estimate", "record": "Record",
           "intact": "Verified: this record is complete and has not been altered since it "
                     "was written.",
           "broken": "Warning: this record does not verify. It may have been altered.",
           "entries": "entries", "refused": "This link cannot be opened",
           "unknown": "unknown", "last": "Last reading", "sites": "Stops"},
    "zh": {"title": "货件", "status": "状态", "eta": "预计到达", "journey": "运输路线",
           "temperature": "温度", "range": "允许范围", "excursions": "温度偏离",
           "none": "无：全程在允许范围内。", "from": "从", "to": "到", "open": "尚未结束",
           "origin": "产地", "lot": "批次", "certificates": "证书", "carbon": "碳足迹",
           "carbon_missing": "数据不足，无法估算", "record": "存证记录",
           "intact": "已验证：此记录完整，写入后未被修改。",
           "broken": "警告：此记录验证失败，可能已被修改。", "entries": "条",
           "refused": "无法打开此链接", "unknown": "未知", "last": "最新读数",
           "sites": "经停"},
}
STATUS = {"en": {"created": "Created", "allocated": "Allocated", "shipped": "Shipped",
                  "in_transit": "In transit", "delivered": "Delivered",
                  "cancelled": "Cancelled"},
          "zh": {"created": "已创建", "allocated": "已分配", "shipped": "已发货",
                 "in_transit": "运输中", "delivered": "已送达", "cancelled": "已取消"}}
STYLE = """body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1d2733;background:#f4f6f8}
main{max-width:640px;margin:auto;padding:12px}section{background:#fff;border-radius:10px;
padding:12px 14px;margin:10px 0;box-shadow:0 1px 2px #0002}h1{font-size:1.25em;margin:.3em 0}
h2{font-size:1em;margin:0 0 .4em;color:#44546a}svg{width:100%;height:auto;display:block}
.ok{color:#1a7f37}.bad{color:#b42318}.muted{color:#667085;font-size:.9em}
ul{padding-left:1.1em;margin:.3em 0}dt{color:#667085}dd{margin:0 0 .4em}"""


def language(accept_language: str | None) -> str:
    """`zh` when the browser prefers Chinese over English, else `en`."""
    best, best_q = "en", -1.0
    for part in (accept_language or "").split(","):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        lang = tag.strip().lower()[:2]
        if lang in TEXT and q > best_q:
            best, best_q = lang, q
    return best


def _page(lang: str, title: str, body: str) -> str:
    return (f'<!doctype html><html lang="{lang}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{escape(title)}</title><style>{STYLE}</style></head>"
            f"<body><main>{body}</main></body></html>")


def refused(reason: str, lang: str) -> str:
    t = TEXT[lang]
    return _page(lang, t["refused"], f'<section><h1>{t["refused"]}</h1>'
                                     f'<p class="bad">{escape(reason)}</p></section>')


def _lines(name: str) -> list[tuple[tuple[float, float, float, float], list]]:
    """The rings or lines of a GeoJSON file of the pages' build, each with its bounding box
    (lon0, lat0, lon1, lat1); none when the pages are not built."""
    path = STATIC / name
    if not path.is_file():
        return []
    out = []
    data = json.loads(path.read_text())
    for geometry in [f["geometry"] for f in data["features"]] if "features" in data else [data]:
        parts = {"Polygon": [geometry["coordinates"]], "LineString": [[geometry["coordinates"]]],
                 "MultiPolygon": geometry["coordinates"],
                 "MultiLineString": [geometry["coordinates"]]}.get(geometry["type"], [])
        for part in parts:
            for line in part:
                lons, lats = [p[0] for p in line], [p[1] for p in line]
                out.append(((min(lons), min(lats), max(lons), max(lats)), line))
    return out


@cache
def basemap() -> tuple[list, list]:
    """Land rings and border lines (Natural Earth 1:50m), loaded once."""
    return _lines("land.geojson"), _lines("borders.geojson")


SITE_KINDS = ("hub", "customer", "cold_store")


def places(fences: dict) -> list[dict]:
    """The network's sites among the fences (hubs, customers, cold stores): name and centre."""
    found = []
    for feature in fences.get("features", []):
        props, geometry = feature.get("properties") or {}, feature.get("geometry") or {}
        if props.get("kind") not in SITE_KINDS:
            continue
        coords = geometry.get("coordinates")
        if geometry.get("type") == "Point":
            lon, lat = coords[:2]
        elif geometry.get("type") == "Polygon":
            ring = coords[0]
            lon, lat = (sum(p[i] for p in ring) / len(ring) for i in (0, 1))
        else:
            continue
        found.append({"name": props.get("name") or props.get("fence_id", ""), "lon": lon,
                      "lat": lat})
    return found


def _journey_svg(journey: list[list], sites: list[dict]) -> str:
    """The journey over the land, its borders and the network's sites near it."""
    if len(journey) < 2:
        return ""
    lon = [p[0] for p in journey]
    lat = [p[1] for p in journey]
    w, h = 320, 220
    mid = (min(lat) + max(lat)) / 2
    k = math.cos(math.radians(mid))  # degrees of longitude are shorter away from the equator
    span = max((max(lon) - min(lon)) * k / w, (max(lat) - min(lat)) / h, 0.02 / h) * 1.25
    cx, cy = (min(lon) + max(lon)) / 2, mid
    view = (cx - span * w / 2 / k, cy - span * h / 2, cx + span * w / 2 / k, cy + span * h / 2)

    def x(lo: float) -> float:
        return w / 2 + (lo - cx) * k / span

    def y(la: float) -> float:
        return h / 2 - (la - cy) / span

    def path(line: list) -> str:
        return "M" + "L".join(f"{x(p[0]):.1f},{y(p[1]):.1f}" for p in line)

    def near(box: tuple) -> bool:
        return box[0] <= view[2] and box[2] >= view[0] and box[1] <= view[3] \
            and box[3] >= view[1]

    land, borders = basemap()
    shapes = "".join(f'<path d="{path(line)}Z" fill="#f4f1e8" stroke="#c9c2ad" '
                     f'stroke-width="0.6"/>' for box, line in land if near(box))
    shapes += "".join(f'<path d="{path(line)}" fill="none" stroke="#b8a98a" '
                      f'stroke-width="0.7" stroke-dasharray="3 2"/>'
                      for box, line in borders if near(box))
    for site in sites:
        if view[0] <= site["lon"] <= view[2] and view[1] <= site["lat"] <= view[3]:
            sx, sy = x(site["lon"]), y(site["lat"])
            shapes += (f'<circle cx="{sx:.1f}" cy="{sy:.1f}" r="3.5" fill="#fff" '
                       f'stroke="#475467" stroke-width="1.2"/><text x="{sx + 5:.1f}" '
                       f'y="{sy - 4:.1f}" font-size="9" fill="#344054">'
                       f'{escape(site["name"])}</text>')
    route = "L".join(f"{x(p[0]):.1f},{y(p[1]):.1f}" for p in journey)
    km = span * h * 111.32 / 4  # a quarter of the view's height, for the scale bar
    nice = next(v for v in (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
                if v >= km * 0.6)
    bar = nice / 111.32 / span
    return (f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="journey">'
            f'<rect width="{w}" height="{h}" fill="#dbe9f6" rx="8"/>{shapes}'
            f'<path d="M{route}" fill="none" stroke="#2563eb" stroke-width="2.5" '
            f'stroke-linejoin="round" stroke-linecap="round"/>'
            f'<circle cx="{x(lon[0]):.1f}" cy="{y(lat[0]):.1f}" r="5" fill="#1a7f37" '
            f'stroke="#fff" stroke-width="1.5"/><circle cx="{x(lon[-1]):.1f}" '
            f'cy="{y(lat[-1]):.1f}" r="6" fill="#b42318" stroke="#fff" stroke-width="1.5"/>'
            f'<path d="M10,{h - 10}h{bar:.1f}" stroke="#344054" stroke-width="2"/>'
            f'<text x="10" y="{h - 14}" font-size="9" fill="#344054">{nice:g} km</text></svg>')


def _when(text: str | None) -> str:
    """An ISO time as `2026-11-25 07:09 UTC`."""
    return "—" if not text else f"{text[:10]} {text[11:16]} UTC"


def _chart_svg(readings: list[dict], profile: dict | None, excursions: list[dict]) -> str:
    points = [(r["at"], r["temp_c"]) for r in readings if r["temp_c"] is not None]
    if len(points) < 2:
        return ""
    values = [v for _, v in points]
    lo, hi = min(values), max(values)
    if profile is not None:
        lo, hi = min(lo, profile["min_c"]), max(hi, profile["max_c"])
    lo, hi = lo - 1, hi + 1
    w, h, left = 320, 160, 30
    n = len(points)

    def y(v: float) -> float:
        return 8 + (hi - v) / (hi - lo) * (h - 24)

    def x(i: int) -> float:
        return left + i / (n - 1) * (w - left - 6)

    band = ""
    if profile is not None:
        band = (f'<rect x="{left}" y="{y(profile["max_c"]):.1f}" width="{w - left - 6}" '
                f'height="{y(profile["min_c"]) - y(profile["max_c"]):.1f}" fill="#d1fadf"/>')
    marks = ""
    times = [t for t, _ in points]
    for exc in excursions:
        i0 = next((i for i, t in enumerate(times) if t >= exc["started_at"]), n - 1)
        i1 = next((i for i, t in enumerate(times) if exc["ended_at"] and t >= exc["ended_at"]),
                  n - 1)
        marks += (f'<rect x="{x(i0):.1f}" y="8" width="{max(x(i1) - x(i0), 2):.1f}" '
                  f'height="{h - 24}" fill="#fee4e2" opacity=".8"/>')
    line = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v) in enumerate(points))
    ticks = "".join(f'<text x="2" y="{y(v) + 3:.1f}" font-size="9" fill="#667085">{v:g}°</text>'
                    for v in sorted({round(lo + 1), round(hi - 1)}))
    return (f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="temperature">{band}{marks}'
            f'<polyline points="{line}" fill="none" stroke="#b54708" stroke-width="1.6"/>'
            f'{ticks}<text x="{left}" y="{h - 4}" font-size="9" fill="#667085">'
            f"{escape(points[0][0][:16])}</text><text x=\"{w - 6}\" y=\"{h - 4}\" "
            f'font-size="9" fill="#667085" text-anchor="end">{escape(points[-1][0][:16])}'
            f"</text></svg>")


def _extreme(value: float | None) -> str:
    return "" if value is None else f" · {value:g}"


def render(story: dict, lang: str, places: list[dict] | None = None) -> str:
    """The page for `story` (`chainsight.trace.story.customer_view`); `places`: the network's
    sites (`name`, `lon`, `lat`) to show near the journey."""
    t = TEXT[lang]
    status = STATUS[lang].get(story["status"] or "", story["status"] or t["unknown"])
    profile = story["profile"]
    range_text = "" if profile is None else \
        f' <span class="muted">({t["range"]} {profile["min_c"]:g} … {profile["max_c"]:g} °C)</span>'
    sites = story["sites"]
    exc_items = "".join(
        f'<li class="bad">{escape(e["started_at"][:16].replace("T", " "))} → '
        f'{escape((e["ended_at"] or t["open"])[:16].replace("T", " "))}'
        f'{_extreme(e.get("extreme"))}</li>' for e in story["excursions"])
    certs = "".join(f"<li>{escape(c['kind'])} — {escape(c['issuer'])} ({escape(c['id'])})</li>"
                    for c in story["origin"]["certificates"])
    co2 = story["carbon"]
    carbon_text = t["carbon_missing"] if co2["kg_co2e"] is None else (
        f'<b>{co2["kg_co2e"]:,.1f} kg CO₂e</b><br><span class="muted">'
        f'{co2["distance_km"]:,.0f} km · {co2["weight_kg"]:,.0f} kg · {escape(co2["mode"])} · '
        f'{co2["factor"]["g_co2e_per_tkm"]:g} g CO₂e/t·km ({escape(co2["factor"]["scope"])}, '
        f'{escape(co2["factor"]["glec_version"])}) · {escape(co2["method"])}</span>')
    record = story["record"]
    verdict = (f'<p class="ok">✔ {t["intact"]}</p>' if record["intact"]
               else f'<p class="bad">✖ {t["broken"]}</p>')
    last = "" if story["last_temp_c"] is None else \
        f'<dt>{t["last"]}</dt><dd>{story["last_temp_c"]:g} °C</dd>'
    body = (
        f'<section><h1>{t["title"]} {escape(story["shipment_id"])}</h1><dl>'
        f'<dt>{t["status"]}</dt><dd>{escape(status)}</dd>'
        f'<dt>{t["eta"]}</dt><dd>{escape(_when(story["eta"]))}</dd>{last}</dl></section>'
        f'<section><h2>{t["journey"]}</h2>{_journey_svg(story["journey"], places or [])}'
        f'<p class="muted">{t["sites"]}: '
        f'{escape(" → ".join(dict.fromkeys(s["site_id"] for s in sites)))}</p></section>'
        f'<section><h2>{t["temperature"]}{range_text}</h2>'
        f'{_chart_svg(story["temperatures"], profile, story["excursions"])}'
        f'<h2>{t["excursions"]}</h2>'
        f'{f"<ul>{exc_items}</ul>" if exc_items else "<p class=ok>" + t["none"] + "</p>"}'
        f'</section>'
        f'<section><h2>{t["origin"]}</h2><dl><dt>{t["lot"]}</dt>'
        f'<dd>{escape(story["origin"]["lot_id"] or "—")}</dd><dt>{t["certificates"]}</dt>'
        f'<dd><ul>{certs or "<li>—</li>"}</ul></dd></dl></section>'
        f'<section><h2>{t["carbon"]}</h2><p>{carbon_text}</p></section>'
        f'<section><h2>{t["record"]}</h2>{verdict}<p class="muted">{record["entries"]} '
        f'{t["entries"]} · SHA-256 {escape(record["head"][:16])}…</p></section>')
    return _page(lang, f'{t["title"]} {story["shipment_id"]}', body)
