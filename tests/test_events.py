"""Decoding and validation against the contract: every dead-letter case, both ts forms."""

import numpy as np
import orjson
import pytest
from helpers import T0, at, line, ms

from chainsight.events import EventDecoder, Gps, InvalidEvent, Order, Sensor, iso

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
    from chainsight.events import iso_many
    times = [0, 1, 999, 1_000, -1, -1_001, ms(0), ms(0) + 7, ms(0) + 120, 253_402_300_799_999]
    assert iso_many(np.array(times)) == [iso(t) for t in times]
