"""How well questions are understood, and how fast they are answered.

Run: .venv/bin/python benchmarks/bench_ask.py [--shipments N] [--alerts N]
Accuracy over tests/data/ask_questions.jsonl, in three parts:
`dev` (160, used while writing it), `heldout` (30 written with them, first run once the
parser was done: 29/30) and `fresh` (20 written after that, first run: 18/20; both misses
were fixed by general rules, so these parts are no longer unseen). A question counts when it
maps to exactly the expected query; one understood as another query is a wrong answer
presented as fact (the bar is 0); an expected query refused counts against accuracy only.
Then: the first question's cost (loading jieba and pypinyin), the time to understand one
question, and the time to answer it over N shipments and alerts.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

from chainsight.ask import Place, answer, understand

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)
TARGET = 0.95
PROFILES = ("pharma_2_8", "frozen", "chilled_food", "ambient")
KINDS = ("temperature_excursion", "sensor_silent", "eta_late", "route_deviation")


def fleet(shipments: int, alerts: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Shipments and alerts as the API lists them."""
    ships = [{"shipment_id": f"SHP-{i:06d}", "status": rng.choice(("in_transit", "delivered")),
              "profile": rng.choice(PROFILES), "open_alerts": [], "eta": None,
              "last_position": {"lat": 52.0, "lon": 4.0, "ts": "2026-11-25T09:00:00Z"},
              "last_temp_c": 5.0, "last_seen": "2026-11-25T09:00:00Z"} for i in range(shipments)]
    found = []
    for i in range(alerts):
        ship = rng.choice(ships)
        ship["open_alerts"].append(f"A{i}")
        found.append({"alert_id": f"A{i}", "kind": rng.choice(KINDS), "state": "open",
                      "severity": rng.choice(("warning", "critical")),
                      "shipment_id": ship["shipment_id"], "at": "2026-11-25T09:30:00Z"})
    return ships, found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shipments", type=int, default=10_000)
    parser.add_argument("--alerts", type=int, default=5_000)
    args = parser.parse_args()
    rows = [json.loads(line) for line in (DATA / "ask_questions.jsonl").open(encoding="utf-8")]
    places = [Place(**p) for p in json.loads((DATA / "ask_places.json").read_text("utf-8"))]

    start = time.perf_counter()
    understand("SHP-000123 什么时候到?", NOW, places)
    first = time.perf_counter() - start

    print(f"questions: {len(rows)} ({sum(r['lang'] == 'zh' for r in rows)} Chinese, "
          f"{sum(r['lang'] == 'en' for r in rows)} English); target accuracy {TARGET:.0%}")
    took, misread_total = [], 0
    for part in ("dev", "heldout", "fresh"):
        for lang in ("zh", "en", None):
            chosen = [r for r in rows if r["part"] == part and lang in (None, r["lang"])]
            exact = misread = refused = 0
            for row in chosen:
                t = time.perf_counter()
                got = understand(row["q"], NOW, places)
                took.append(time.perf_counter() - t)
                if (got.query() if got.understood else None) == row["expect"]:
                    exact += 1
                elif got.understood:
                    misread += 1
                else:
                    refused += 1
            if lang is None:
                misread_total += misread
            label = f"{part}/{lang or 'all'}"
            print(f"  {label:12s} {exact:3d}/{len(chosen):3d} exact = "
                  f"{exact / len(chosen):6.1%} ({exact / len(chosen) / TARGET:4.2f}x target); "
                  f"refused {refused}, misread (wrong answer as fact) {misread}")
    print(f"wrong answers presented as fact: {misread_total} (bar: 0)")
    took.sort()
    print(f"first question (loads jieba, pypinyin, rapidfuzz): {first * 1000:.0f} ms")
    print(f"understand one question: median {statistics.median(took) * 1000:.2f} ms, "
          f"p95 {took[int(len(took) * 0.95)] * 1000:.2f} ms")

    ships, alerts = fleet(args.shipments, args.alerts, random.Random(7))
    ids = [s["shipment_id"] for s in ships]
    for question in ("哪些冷链订单现在温度异常?", "how many critical alerts are open?",
                     "which shipments are at risk?", "SHP-000123 什么时候到?"):
        interpretation = understand(question, NOW, places, known_ids=ids)
        t = time.perf_counter()
        result = answer(interpretation, ships, alerts)
        elapsed = time.perf_counter() - t
        print(f"answer over {len(ships):,} shipments / {len(alerts):,} alerts: "
              f"{elapsed * 1000:7.1f} ms  count {result['count']:6d}  {question}")


if __name__ == "__main__":
    main()
