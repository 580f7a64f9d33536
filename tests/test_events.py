"""Decoding and validation against the contract: every dead-letter case, both ts forms."""

import numpy as np
import orjson
import pytest
from helpers import T0, at, line, ms

from chainsight.contract.events import EventDecoder, Gps, InvalidEvent, Order, Sensor
from chainsight.contract.times import iso

NOW = ms(0)
decoder = EventDecoder()


def reject(raw: bytes) -> str:
    with pytest.raises(InvalidEvent) as err:
        decoder.decode(raw, now=NOW)
    reason = str(err.value)
    assert reason and "\n" not in reason
    return reason


GOOD_GPS = {"type": "gps", "device_id": "G1", "ts": "2026-11-20T08:00:00Z", "lat": 52.1,
            "lon": 4.3}


@pytest.mark.parametrize(("raw", "words"), [
    (b'{"type": "gps", "device_id": ', "malformed JSON"),
    (b"not json at all", "malformed JSON"),
    (b'[1, 2, 3]', "object"),
    (line(type="gps", ts=at(0), lat=1, lon=2), "device_id"),
    (line(type="sensor", device_id="T1", temp_c=4), "ts"),
    (line(device_id="T1", ts=at(0), temp_c=4), "type"),
    (line(type="teleport", device_id="T1", ts=at(0)), "type"),
    (line(**{**GOOD_GPS, "lat": "52.1"}), "lat"),
    (line(**{**GOOD_GPS, "ts": True}), "ts"),
    (line(**{**GOOD_GPS, "lat": 90.5}), "lat"),
    (line(**{**GOOD_GPS, "lat": -91}), "lat"),
    (line(**{**GOOD_GPS, "lon": 180.01}), "lon"),
    (line(**{**GOOD_GPS, "lon": -181}), "lon"),
    (b'{"type":"gps","device_id":"G1","ts":"2026-11-20T08:00:00Z","lat":NaN,"lon":4}',
     "malformed JSON"),
    (b'{"type":"gps","device_id":"G1","ts":"2026-11-20T08:00:00Z","lat":1,"lon":Infinity}',
     "malformed JSON"),
    (b'{"type":"gps","device_id":"G1","ts":"2026-11-20T08:00:00Z","lat":1e999,"lon":4}', "lat"),
    (line(**{**GOOD_GPS, "ts": "2026-11-20T08:00:00"}), "timezone"),
    (line(**{**GOOD_GPS, "ts": at(24 * 60 + 1)}), "future"),
    (line(type="sensor", device_id="T1", ts=at(0), battery_pct=80), "reading"),
    (line(type="scan", shipment_id="S1", ts=at(0), site_id="W1", step="teleported"), "step"),
    (line(type="order", order_id="O1", shipment_id="S1", ts=at(0), status="lost"), "status"),
    (line(type="order", order_id="O1", shipment_id="S1", ts=at(0), status="created",
          origin={"lat": 95, "lon": 0}), "lat"),
    (line(**{**GOOD_GPS, "pad": "x" * 70_000}), "exceeds"),
])
def test_every_malformed_input_is_rejected_with_a_one_line_reason(raw, words):
    assert words.lower() in reject(raw).lower()


def test_both_timestamp_forms_mean_the_same_instant():
    iso_utc = decoder.decode(line(**GOOD_GPS), now=NOW)
    epoch = decoder.decode(line(**{**GOOD_GPS, "ts": int(T0.timestamp() * 1000)}), now=NOW)
    offset = decoder.decode(line(**{**GOOD_GPS, "ts": "2026-11-20T16:00:00+08:00"}), now=NOW)
    assert iso_utc.ts == epoch.ts == offset.ts == ms(0)
    assert iso(iso_utc.ts) == "2026-11-20T08:00:00Z"


def test_unknown_fields_are_accepted_and_types_are_decoded():
    event = decoder.decode(line(**GOOD_GPS, firmware="1.2.3", extra={"a": 1}), now=NOW)
    assert isinstance(event, Gps) and event.lat == 52.1
    sensor = decoder.decode(line(type="sensor", device_id="T1", ts=at(1), humidity_pct=55.0),
                            now=NOW)
    assert isinstance(sensor, Sensor) and sensor.temp_c is None
    order = decoder.decode(line(type="order", order_id="O1", shipment_id="S1", ts=at(0),
                                status="created", promised_by="2026-11-21T08:00:00Z",
                                lot={"lot_id": "L1", "certificates": [
                                    {"kind": "GMP", "issuer": "EMA", "id": "C-1"}]}), now=NOW)
    assert isinstance(order, Order) and order.promised_by == ms(24 * 60)


def test_batch_decoding_keeps_line_numbers_and_payloads_of_rejects():
    lines = [line(**GOOD_GPS), b"{oops\n", b"\n", line(**{**GOOD_GPS, "lat": 99}),
             line(**{**GOOD_GPS, "ts": at(3000)}), line(**GOOD_GPS)]
    events, dead = decoder.decode_many(lines, first_line=10, now=NOW)
    assert len(events) == 2
    assert [d["line"] for d in dead] == [11, 13, 14]
    assert dead[0]["payload"] == "{oops"
    assert orjson.loads(dead[1]["payload"])["lat"] == 99


def test_iso_many_formats_as_iso():
    from chainsight.contract.times import iso_many
    times = [0, 1, 999, 1_000, -1, -1_001, ms(0), ms(0) + 7, ms(0) + 120, 253_402_300_799_999]
    assert iso_many(np.array(times)) == [iso(t) for t in times]


GPS_AT = b'{"type":"gps","device_id":"G1","ts":%s,"lat":1,"lon":2%s}'
ORDER_PROMISED = (b'{"type":"order","order_id":"O1","shipment_id":"S1","ts":"2026-11-20T08:00:00Z",'
                  b'"status":"created","promised_by":%s}')


@pytest.mark.parametrize(("ts", "reason"), [
    (b"1764057600000000", "ts 1764057600000000 is more than 24 h in the future"),  # epoch us
    (b"1764057600000000000", "ts 1764057600000000000 is more than 24 h in the future"),  # ns
    (b'"9999-12-31T23:59:59-23:59"',
     "ts 9999-12-31T23:59:59-23:59 is more than 24 h in the future"),
    (b"99999999999999999999999", "ts 99999999999999999999999 is out of range"),
    (b"-99999999999999999999999", "ts -99999999999999999999999 is out of range"),
    (b"-5000", "ts -5000 is before 1970-01-01 (device clock not set?)"),
    (b"-1", "ts -1 is before 1970-01-01 (device clock not set?)"),
    (b'"0001-01-01T00:00:00Z"',
     "ts 0001-01-01T00:00:00+00:00 is before 1970-01-01 (device clock not set?)"),
])
def test_times_outside_1970_to_tomorrow_are_rejected_without_crashing(ts, reason):
    assert reject(GPS_AT % (ts, b"")) == reason


def test_the_first_instant_of_1970_is_accepted():
    assert decoder.decode(GPS_AT % (b"0", b""), now=NOW).ts == 0
    assert decoder.decode(GPS_AT % (b'"1970-01-01T01:00:00+01:00"', b""), now=NOW).ts == 0


@pytest.mark.parametrize(("promised", "reason"), [
    (b'"9999-12-31T23:59:59-23:59"', "promised_by 9999-12-31T23:59:59-23:59 is after 9999-12-31"),
    (b"1764057600000000000", "promised_by 1764057600000000000 is after 9999-12-31"),
    (b"99999999999999999999999", "promised_by 99999999999999999999999 is out of range"),
    (b"-5000", "promised_by -5000 is before 1970-01-01"),
])
def test_promised_by_must_be_a_time_the_engine_can_hold(promised, reason):
    assert reject(ORDER_PROMISED % promised) == reason


def test_a_far_promise_within_the_calendar_is_kept():
    order = decoder.decode(ORDER_PROMISED % b'"9999-12-31T23:59:59Z"', now=NOW)
    assert order.promised_by == 253_402_300_799_000


def test_iso_never_raises():
    assert iso(253_402_300_799_999) == "9999-12-31T23:59:59.999Z"
    assert iso(253_402_387_139_000) == "10000-01-01T23:58:59Z"
    assert iso(-62_135_596_800_001) == "0000-12-31T23:59:59.999Z"
    assert iso(2**63 - 1) == "292278994-08-17T07:12:55.807Z"
    assert iso(2**63) == str(2**63) and iso(-(2**63)) == str(-(2**63))


def deep(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_an_unknown_member_nested_too_deeply_is_dropped_and_the_event_kept():
    for depth in (2_000, 30_000):
        raw = GPS_AT % (str(ms(0)).encode(), b',"x":{"y":' + deep(depth) + b'},"firmware":"1.2"')
        event = decoder.decode(raw, now=NOW)
        assert isinstance(event, Gps) and (event.ts, event.lat, event.lon) == (ms(0), 1, 2)
    tagged_last = b'{"x":' + deep(5_000) + b',"type":"sensor","device_id":"T1","ts":0,"temp_c":4}'
    assert decoder.decode(tagged_last, now=NOW).temp_c == 4


def test_a_deeply_nested_known_field_or_non_object_is_rejected_precisely():
    lot = b',"lot":{"lot_id":"L1","x":' + deep(3_000) + b"}"
    assert reject(ORDER_PROMISED.replace(b',"promised_by":%s', lot)) == (
        "JSON nested deeper than 64 levels in field lot")
    certificates = b',"lot":{"lot_id":"L1","certificates":[' + deep(3_000) + b"]}"
    assert reject(ORDER_PROMISED.replace(b',"promised_by":%s', certificates)) == (
        "invalid event: Expected `object`, got `array` - at `$.lot.certificates[0]`")
    assert reject(deep(30_000)) == "invalid event: Expected `object`, got `array`"
    assert reject(b"[" * 60_000) == "invalid event: Expected `object`, got `array`"
    unclosed = GPS_AT % (b"0", b',"x":' + b"[" * 5_000)
    assert reject(unclosed).startswith("malformed JSON: ")


@pytest.mark.parametrize(("raw", "reason"), [
    (GPS_AT % (b"0", b',"x":"\xff"'), "malformed JSON: invalid UTF-8 at byte 59"),
    (GPS_AT % (b"0", b',"\xc3":1'), "malformed JSON: invalid UTF-8 at byte 55"),
    (b'{"type":"gps","device_id":"G\xed\xa0\x80","ts":0,"lat":1,"lon":2}',
     "malformed JSON: invalid UTF-8 at byte 28"),  # an encoded surrogate
])
def test_invalid_utf8_anywhere_is_malformed_json(raw, reason):
    assert reject(raw) == reason


def test_valid_utf8_in_unknown_fields_is_accepted():
    assert decoder.decode(GPS_AT % (b"0", ',"note":"Träger 冷"'.encode()), now=NOW).ts == 0


@pytest.mark.parametrize(("value", "reason"), [
    (b'"lat":NaN', "malformed JSON: NaN is not allowed (field lat)"),
    (b'"lat": -NaN', "malformed JSON: -NaN is not allowed (field lat)"),
    (b'"lat":Infinity', "malformed JSON: Infinity is not allowed (field lat)"),
    (b'"lat" : -Infinity', "malformed JSON: -Infinity is not allowed (field lat)"),
    (b'"lat":1,"extra":[NaN]', "malformed JSON: NaN is not allowed"),
])
def test_nan_and_infinity_are_named_with_their_field(value, reason):
    assert reject((GPS_AT % (b"0", b"")).replace(b'"lat":1', value)) == reason


def test_reasons_quoting_input_stay_on_one_line():
    assert reject(line(**{**GOOD_GPS, "type": "g\nps"})) == (
        "invalid event: Invalid value 'g ps' - at `$.type`")


def test_only_json_whitespace_makes_a_line_blank():
    events, dead = decoder.decode_many([b" \t\r\n", b"\x0c", b"\x0b\n"], now=NOW)
    assert not events and [d["line"] for d in dead] == [2, 3]
