"""Questions in plain words: the question set (understood exactly, or refused, never a wrong
query), and answers computed over plain shipment and alert data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from chainsight.ask import Place, answer, understand

DATA = Path(__file__).parent / "data"
QUESTIONS = [json.loads(line) for line in (DATA / "ask_questions.jsonl").open(encoding="utf-8")]
PLACES = [Place(**p) for p in json.loads((DATA / "ask_places.json").read_text("utf-8"))]
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_the_question_set_is_half_chinese_half_english_with_a_held_out_part():
    assert len(QUESTIONS) >= 150
    langs = [q["lang"] for q in QUESTIONS]
    assert langs.count("zh") == langs.count("en")
    assert sum(q["part"] == "heldout" for q in QUESTIONS) >= 30
    assert {q["who"] for q in QUESTIONS} >= {"dispatcher", "quality", "sales", "customer"}


@pytest.mark.parametrize("part", ["dev", "heldout", "fresh"])
def test_questions_map_to_their_query_or_are_refused_never_misread(part):
    rows = [q for q in QUESTIONS if q["part"] == part]
    exact, misread = 0, []
    for row in rows:
        got = understand(row["q"], NOW, PLACES)
        if (got.query() if got.understood else None) == row["expect"]:
            exact += 1
        elif got.understood:  # a wrong query would be answered as if it were right
            misread.append((row["q"], got.query()))
        assert got.language == row["lang"], row["q"]
    assert misread == []
    assert exact / len(rows) >= 0.95


def test_relative_times_follow_the_askers_time_zone():
    shanghai = understand("今天有多少告警", NOW, tz="Asia/Shanghai").time_range
    assert shanghai == {"field": "at", "from": "2026-11-24T16:00:00Z",
                        "to": "2026-11-25T16:00:00Z"}


def test_known_short_ids_are_recognised_in_any_case():
    got = understand("where is s1?", NOW, known_ids=["S1", "S10"])
    assert got.query()["filters"] == {"shipment_id": ["S1"]}


# --- answers over plain data ---------------------------------------------------------------

def shipment(sid: str, **view) -> dict:
    return {"shipment_id": sid, "status": "in_transit", "last_position": None,
            "last_temp_c": None, "profile": "pharma_2_8", "open_alerts": [], "eta": None,
            "last_seen": "2026-11-25T09:00:00Z", **view}


def alert(aid: str, sid: str, kind: str = "temperature_excursion", state: str = "open",
          severity: str = "warning", at: str = "2026-11-25T09:30:00Z") -> dict:
    return {"alert_id": aid, "kind": kind, "state": state, "shipment_id": sid,
            "severity": severity, "at": at, "details": {}}


SHIPMENTS = [
    shipment("SHP-1", open_alerts=["A1"], eta="2026-11-25T15:00:00Z",
             last_position={"lat": 51.9, "lon": 4.4, "ts": "2026-11-25T09:00:00Z"}),
    shipment("SHP-2", profile="frozen", open_alerts=["A2", "A3"]),
    shipment("SHP-3", profile="ambient", status="delivered", last_seen="2026-11-24T12:00:00Z"),
    shipment("SHP-4", profile="frozen", eta="2026-11-25T20:00:00Z",
             promised_by="2026-11-25T12:00:00Z"),
]
ALERTS = [
    alert("A1", "SHP-1", severity="critical"),
    alert("A2", "SHP-2", state="acknowledged"),
    alert("A3", "SHP-2", kind="eta_late", severity="warning"),
    alert("A4", "SHP-3", state="resolved", at="2026-11-24T13:00:00Z"),
    alert("A5", "SHP-3", state="retracted"),
]


IDS = [s["shipment_id"] for s in SHIPMENTS]


def ask(question: str, **options) -> dict:
    return answer(understand(question, NOW, PLACES, known_ids=IDS), SHIPMENTS, ALERTS,
                  **options)


def test_answers_have_exactly_the_contracts_fields():
    for question in ("how many critical alerts are open?", "你好", "SHP-1 什么时候到"):
        assert set(ask(question)) == {"understood", "interpretation", "answer",
                                      "shipment_ids", "count"}


def test_counts_and_lists_give_what_the_filters_give():
    critical = ask("how many critical alerts are open?")
    assert (critical["count"], critical["shipment_ids"]) == (1, ["SHP-1"])
    assert critical["answer"].startswith("1 alerts")
    temperature = ask("哪些冷链订单现在温度异常?")  # unresolved: open or acknowledged
    assert temperature["shipment_ids"] == ["SHP-1", "SHP-2"]
    assert temperature["answer"].startswith("共 2 个订单")
    assert ask("how many shipments are late?")["shipment_ids"] == ["SHP-2", "SHP-4"]
    assert ask("which frozen shipments are at risk")["shipment_ids"] == ["SHP-2", "SHP-4"]
    assert ask("how many alerts were resolved yesterday")["count"] == 1
    assert ask("shipments delivered yesterday")["shipment_ids"] == ["SHP-3"]
    assert ask("which shipments arrive today")["shipment_ids"] == ["SHP-1", "SHP-4"]
    assert ask("shipments with no alerts")["shipment_ids"] == ["SHP-3", "SHP-4"]
    retracted = ask("list all alerts today")
    assert "A5" not in retracted["answer"] and retracted["count"] == 3


def test_places_use_the_callers_locator():
    def locate(shipments, place_ids):
        assert place_ids == ["HUB-RTM"]
        return {s["shipment_id"] for s in shipments if s["last_position"]}

    near = ask("shipments near Rotterdam", locate=locate)
    assert near["shipment_ids"] == ["SHP-1"]
    assert ask("shipments near Rotterdam")["shipment_ids"] == []  # no locator: nowhere


def test_one_shipments_status_and_an_unknown_one():
    status = ask("When will SHP-1 arrive?")
    assert status["shipment_ids"] == ["SHP-1"] and status["count"] == 1
    assert "in transit" in status["answer"] and "2026-11-25T15:00:00Z" in status["answer"]
    missing = ask("SHP-999 到哪了")
    assert missing["understood"] and missing["shipment_ids"] == [] and missing["count"] == 0
    assert "SHP-999" in missing["answer"]


def test_temperature_history_from_the_shipments_recent_events():
    history = [{"type": "sensor", "ts": f"2026-11-25T0{h}:00:00Z", "temp_c": t}
               for h, t in ((7, 4.0), (8, 9.5), (9, 6.0))] + [{"type": "gps", "ts": 1}]
    data = [{**SHIPMENTS[0], "history": history}]
    got = answer(understand("SHP-1 过去两小时的温度", NOW, known_ids=IDS), data, ALERTS)
    assert got["shipment_ids"] == ["SHP-1"]
    assert "共 2 个温度读数" in got["answer"] and "最高 9.5 °C" in got["answer"]
    assert "6.0 °C" in got["answer"]


def test_a_question_not_understood_gets_what_can_be_asked_and_nothing_else():
    for question, words in (("tell me a joke", "I could not understand"),
                            ("今天股票涨了吗", "没能理解"),
                            ("'; DROP TABLE shipments; --", "I could not understand"),
                            ("🚚" * 50, "没能理解"), ("x" * 5000, "I could not understand")):
        got = ask(question)
        assert not got["understood"] and got["shipment_ids"] == [] and got["count"] == 0
        assert got["answer"].startswith(words), got["answer"]
