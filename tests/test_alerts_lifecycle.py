"""The alert lifecycle: acknowledge, resolve, flapping, severity, escalation and the audit trail."""

from datetime import datetime

import pytest
from helpers import at, fix, ms, order, reading, series

from chainsight.alerts.audit import AuditTrail
from chainsight.alerts.book import AlertBook
from chainsight.config import load_settings
from chainsight.contract.commands import Acknowledge, CommandRefused, Resolve, UnknownAlert
from chainsight.engine.core import Engine

EXCURSION = [order()] + series([5] + [9] * 16)  # continuous excursion opens at minute 16


def transitions(alerts, rule="continuous"):
    return [(a["details"]["transition"], a["state"], a["severity"], a["at"]) for a in alerts
            if a["details"].get("rule") == rule]


def feed(eng, lines, now=None):
    """Alert transitions and notifications (escalations) of processing `lines` (arriving at
    `now`) to the end, in event-time order."""
    outs = [eng.process(lines, now=now), eng.flush()]
    def when(record):
        return datetime.fromisoformat(record["at"].replace("Z", "+00:00"))

    return [r for o in outs for r in sorted(o.alerts + o.notifications, key=when)]


def test_escalations_are_notifications_beside_the_contract_alert_stream():
    eng = Engine()
    out = [eng.process(EXCURSION + series([9] * 10, start=17)), eng.flush()]
    alerts = [a for o in out for a in o.alerts]
    notes = [n for o in out for n in o.notifications]
    assert [(a["state"], a["at"]) for a in alerts if a["details"]["rule"] == "continuous"] == [
        ("open", at(16))]
    assert [(n["details"]["transition"], n["severity"]) for n in notes] == [
        ("escalated", "critical")]


def ack(eng, aid, user, at_ms=None, comment=None):
    """Acknowledge through the engine API; the transition record it returns."""
    (record,) = eng.apply(Acknowledge(aid, user, comment, at_ms)).alerts
    return record


def acked(eng, aid, user, at_ms):
    """What acknowledging produces at once (timers due before it fire first), in time order."""
    out = eng.apply(Acknowledge(aid, user, at=at_ms))
    return sorted(out.notifications, key=lambda r: r["at"]) + out.alerts


def resolve(eng, aid, user, comment, at_ms=None):
    (record,) = eng.apply(Resolve(aid, user, comment, at_ms)).alerts
    return record


def opened(eng):
    """Process EXCURSION; the id of the continuous excursion it opens (engine clock: 16)."""
    alerts = feed(eng, EXCURSION)
    return next(a["alert_id"] for a in alerts if a["details"].get("rule") == "continuous")


def test_acknowledge_returns_the_transition_at_once_and_only_once():
    eng = Engine()
    aid = opened(eng)
    out = eng.apply(Acknowledge(aid, "alice", "calling the driver", ms(17)))
    (record,) = out.alerts
    assert record["state"] == "acknowledged" and record["alert_id"] == aid
    assert record["at"] == at(17) and record["details"]["acknowledged_by"] == "alice"
    assert record["details"]["transition"] == "acknowledged"
    assert record["details"]["user"] == "alice"
    assert record["details"]["comment"] == "calling the driver"
    assert [e["transition"] for e in out.audit] == ["acknowledged"]
    assert eng.alert(aid) == record and eng.alerts(state="acknowledged") == [record]
    assert eng.process([]).alerts == []
    assert aid in eng.snapshot()["shipments"]["S1"]["open_alerts"]  # still not resolved


def test_an_acknowledged_alert_resolves_automatically_when_the_condition_clears():
    eng = Engine()
    aid = opened(eng)
    alerts = acked(eng, aid, "alice", ms(17)) + feed(eng, series([9, 9, 5], start=17))
    assert transitions(alerts) == [("acknowledged", "acknowledged", "warning", at(17)),
                                   ("resolved", "resolved", "warning", at(19))]
    assert eng.snapshot()["shipments"]["S1"]["open_alerts"] == []


def test_an_unacknowledged_alert_escalates_after_five_minutes_of_event_time():
    alerts = feed(Engine(), EXCURSION + series([9] * 10, start=17))
    assert transitions(alerts) == [("opened", "open", "warning", at(16)),
                                   ("escalated", "open", "critical", at(21))]
    escalated = transitions(alerts)[1]
    assert escalated[1] == "open"
    details = [a for a in alerts if a["details"]["transition"] == "escalated"][0]["details"]
    assert details["escalated"] is True and details["escalated_at"] == at(21)


def test_acknowledging_at_the_deadline_prevents_the_escalation_and_later_does_not():
    eng = Engine()
    aid = opened(eng)
    alerts = acked(eng, aid, "bob", ms(21)) + feed(eng, series([9] * 10, start=17))
    assert [t[0] for t in transitions(alerts)] == ["acknowledged"]
    eng = Engine()
    aid = opened(eng)
    alerts = acked(eng, aid, "bob", ms(21) + 1) + feed(eng, series([9] * 10, start=17))
    assert [t[:2] for t in transitions(alerts)] == [("escalated", "open"),
                                                   ("acknowledged", "acknowledged")]


def test_severity_rises_with_duration_for_an_acknowledged_alert():
    # critical once the condition has lasted 60 minutes: started at minute 1, so at minute 61
    eng = Engine()
    aid = opened(eng)
    alerts = acked(eng, aid, "alice", ms(17)) + feed(eng, series([9] * 60, start=17))
    assert transitions(alerts)[1:] == [("severity_raised", "acknowledged", "critical", at(61))]


def test_a_flapping_condition_continues_the_same_alert_within_the_quiet_period():
    # out 16 minutes, in 3, out 16 again: the second episode starts 3 minutes after the
    # resolution (quiet period 10): same alert, its acknowledgement kept, no new escalation
    eng = Engine()
    aid = opened(eng)
    flaps = series([5] * 3 + [9] * 16 + [5], start=17)
    alerts = acked(eng, aid, "alice", ms(17)) + feed(eng, flaps)
    assert transitions(alerts) == [
        ("acknowledged", "acknowledged", "warning", at(17)),
        ("resolved", "resolved", "warning", at(17)),
        ("reopened", "acknowledged", "warning", at(35)),
        ("resolved", "resolved", "warning", at(36))]
    assert {a["alert_id"] for a in alerts if a["details"].get("rule") == "continuous"} == {aid}
    reopened = [a for a in alerts if a["details"]["transition"] == "reopened"][0]
    assert reopened["details"]["reopen_count"] == 1
    assert reopened["details"]["first_opened_at"] == at(16)
    assert reopened["details"]["started_at"] == at(20)


def test_a_condition_returning_after_the_quiet_period_is_a_new_alert():
    eng = Engine(settings=load_settings(alert_quiet_min=2))
    aid = opened(eng)
    alerts = feed(eng, series([5] * 3 + [9] * 16 + [5], start=17))
    new = [a for a in alerts if a["details"]["transition"] == "opened"]
    assert len(new) == 1 and new[0]["alert_id"] != aid


def test_manual_resolution_needs_a_comment_and_closes_for_good():
    eng = Engine()
    aid = opened(eng)
    with pytest.raises(CommandRefused, match="comment"):
        resolve(eng, aid, "carol", "  ")
    record = resolve(eng, aid, "carol", "product moved to a backup reefer")
    assert record["state"] == "resolved" and record["at"] == at(16)  # the engine's clock
    assert record["details"]["resolved_by"] == "carol"
    assert record["details"]["comment"] == "product moved to a backup reefer"
    # the excursion goes on, clears, and returns quickly: a new alert, not the closed one
    alerts = feed(eng, series([9] * 4 + [5] + [9] * 16, start=17))
    assert [(a["details"]["transition"], a["alert_id"] == aid)
            for a in alerts if a["details"].get("rule") == "continuous"] == [("opened", False)]


def test_invalid_transitions_and_unknown_ids_raise_clear_errors():
    eng = Engine()
    aid = opened(eng)
    with pytest.raises(UnknownAlert, match="unknown alert id 'nope'"):
        ack(eng, "nope", "alice")
    with pytest.raises(CommandRefused, match="named user"):
        ack(eng, aid, " ")
    ack(eng, aid, "alice")
    with pytest.raises(CommandRefused, match="only an open alert"):
        ack(eng, aid, "bob")
    with pytest.raises(CommandRefused, match="before its last transition"):
        resolve(eng, aid, "bob", "done", at_ms=ms(3))
    resolve(eng, aid, "bob", "done")
    with pytest.raises(CommandRefused, match="already resolved"):
        resolve(eng, aid, "bob", "again")
    with pytest.raises(CommandRefused, match="is resolved"):
        ack(eng, aid, "bob")


def test_every_transition_is_in_a_verifiable_audit_trail():
    eng = Engine()
    aid = opened(eng)
    ack(eng, aid, "alice", at_ms=ms(17), comment="on it")
    feed(eng, series([9, 5], start=17))
    history = eng.audit_trail(aid)
    assert [(e["transition"], e["who"], e["at"]) for e in history] == [
        ("opened", "engine", at(16)), ("acknowledged", "alice", at(17)),
        ("resolved", "engine", at(18))]
    assert history[1]["comment"] == "on it" and history[1]["recorded_at"]
    assert eng.verify_audit()


def test_the_audit_trail_detects_rewritten_removed_and_reordered_entries():
    trail = AuditTrail()
    for i in range(5):
        trail.append({"alert_id": f"a{i}", "who": "engine", "at": i}, i)
    assert trail.verify()
    copy = trail[2]
    copy["who"] = "mallory"  # reads are copies: the trail is unchanged
    assert trail[2]["who"] == "engine" and trail.verify()

    def tampered(change):
        t = AuditTrail()
        for i in range(5):
            t.append({"alert_id": f"a{i}", "who": "engine", "at": i}, i)
        change(t)
        return t.verify()

    def rewrite(t):
        t._entries[2] = t._entries[2].replace(b'"engine"', b'"mallory"')

    def rewrite_and_rehash(t):
        rewrite(t)
        from hashlib import sha256
        t._hashes[2] = sha256(t._hashes[1].encode() + t._entries[2]).hexdigest()

    def remove(t):
        del t._entries[1], t._hashes[1]

    def swap(t):
        t._entries[1], t._entries[2] = t._entries[2], t._entries[1]
        t._hashes[1], t._hashes[2] = t._hashes[2], t._hashes[1]

    for change in (rewrite, rewrite_and_rehash, remove, swap):
        assert not tampered(change), change.__name__
    head = trail.head
    trail.append({"alert_id": "a5", "who": "engine", "at": 5}, 5)
    assert trail.head != head and trail.verify()


def test_the_audit_trail_forgets_old_entries_and_still_chains():
    trail = AuditTrail()
    for i in range(6):
        trail.append({"alert_id": f"a{i}", "who": "engine"}, [0, 1, 2, 9, 3, 10][i])
    hashes = [e["hash"] for e in trail]
    trail.forget_before(5)  # stops at the first entry not older: time order is not required
    assert [e["seq"] for e in trail] == [3, 4, 5]
    assert trail.anchor == hashes[2] and trail.verify()
    trail.append({"alert_id": "a6", "who": "engine"}, 11)
    assert trail.verify() and trail[-1]["seq"] == 6
    trail._entries[0] = trail._entries[0].replace(b'"engine"', b'"mallory"')
    assert not trail.verify()


def test_resolved_alerts_are_forgotten_after_the_retention():
    eng = Engine()
    aid = opened(eng)
    feed(eng, series([5] * 3, start=17))  # resolved at minute 17
    hours = load_settings().alert_retention_h
    late = hours * 60  # a second excursion, still open when the first is forgotten
    alerts = feed(eng, [order("S2", devices=("T2", "G2"), minutes=late)]
                  + series([9] * 17, start=late, device="T2")
                  + [fix(late + m, device="G2") for m in range(17)], now=ms(late + 16))
    still_open = next(a["alert_id"] for a in alerts if a["shipment_id"] == "S2")
    assert eng.alert(aid) is not None
    later = late + hours * 60 / 8 + 30  # forgetting runs every eighth of it
    feed(eng, [reading(later, 5.0, device="T2"), fix(later, device="G2")])
    assert eng.alert(aid) is None and eng.alert(still_open) is not None
    assert eng.audit_trail(aid) == [] and eng.verify_audit()
    with pytest.raises(KeyError):
        ack(eng, aid, "alice")


def test_lifecycle_records_do_not_depend_on_batch_boundaries():
    lines = EXCURSION + series([9] * 70 + [5] * 3 + [9] * 20, start=17) + [
        fix(110 + i) for i in range(30)]
    expected = feed(Engine(), lines)
    eng = Engine()
    outs = [eng.process([raw]) for raw in lines] + [eng.flush()]
    pieces = [a for o in outs for a in o.alerts + o.notifications]
    assert sorted(map(str, pieces)) == sorted(map(str, expected))
    assert {a["details"]["transition"] for a in expected} >= {"opened", "escalated",
                                                              "reopened", "resolved"}


def test_the_book_on_its_own():
    book = AlertBook(quiet_ms=0, escalate_ms=None, critical_ms=None)
    book.open("sensor_silent", "S1", "T1", None, 10, "warning", {"x": 1})
    assert book.open("sensor_silent", "S1", "T1", None, 11, "warning", {}) is None
    book.on_clock(10**9)  # no timers configured: nothing fires
    book.resolve("sensor_silent", "S1", "T1", None, 20)
    assert [r["details"]["transition"] for _, r in book.collect()[0]] == ["opened", "resolved"]
    assert book.collect() == ([], [], [])
