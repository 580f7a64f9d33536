"""The customer's trace page, rendered on the server: mobile-first HTML with inline SVG for the
journey and the temperature chart, so it needs no script, font or tile from anywhere. English
or Chinese, by the browser's `Accept-Language`."""

from __future__ import annotations

from html import escape

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
STATUS_ZH = {"created": "已创建", "allocated": "已分配", "shipped": "已发货",
             "in_transit": "运输中", "delivered": "已送达", "cancelled": "已取消"}
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


def _journey_svg(journey: list[list], sites_of_ends: tuple[str, str]) -> str:
    if len(journey) < 2:
        return ""
    lon = [p[0] for p in journey]
    lat = [p[1] for p in journey]
    x0, x1, y0, y1 = min(lon), max(lon), min(lat), max(lat)
    span = max(x1 - x0, y1 - y0, 1e-3)
    w, h, pad = 320, 200, 12

    def xy(p: list) -> str:
        return (f"{pad + (p[0] - x0) / span * (w - 2 * pad):.1f},"
                f"{h - pad - (p[1] - y0) / span * (h - 2 * pad):.1f}")

    path = " ".join(xy(p) for p in journey)
    start, end = xy(journey[0]).split(","), xy(journey[-1]).split(",")
    return (f'<svg viewBox="0 0 {w} {h}" role="img" aria-label="journey">'
            f'<rect width="{w}" height="{h}" fill="#eaf1f7" rx="8"/>'
            f'<polyline points="{path}" fill="none" stroke="#2563eb" stroke-width="2.5" '
            f'stroke-linejoin="round"/>'
            f'<circle cx="{start[0]}" cy="{start[1]}" r="5" fill="#1a7f37"/>'
            f'<circle cx="{end[0]}" cy="{end[1]}" r="6" fill="#b42318"/>'
            f'<text x="{pad}" y="{h - 3}" font-size="10" fill="#44546a">'
            f"{escape(sites_of_ends[0])} → {escape(sites_of_ends[1])}</text></svg>")


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


def render(story: dict, lang: str) -> str:
    """The page for `story` (`chainsight.trace.story.customer_view`)."""
    t = TEXT[lang]
    status = story["status"] or t["unknown"]
    if lang == "zh":
        status = STATUS_ZH.get(status, status)
    profile = story["profile"]
    range_text = "" if profile is None else \
        f' <span class="muted">({t["range"]} {profile["min_c"]:g}–{profile["max_c"]:g} °C)</span>'
    sites = story["sites"]
    ends = (sites[0]["site_id"], sites[-1]["site_id"]) if sites else ("", "")
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
        f'<dt>{t["eta"]}</dt><dd>{escape(story["eta"] or "—")}</dd>{last}</dl></section>'
        f'<section><h2>{t["journey"]}</h2>{_journey_svg(story["journey"], ends)}'
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
