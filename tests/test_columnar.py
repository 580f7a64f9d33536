"""The columnar scanner decodes exactly what msgspec decodes, and leaves it everything else."""

import math

import numpy as np
import orjson
from helpers import ms
from hypothesis import given, settings
from hypothesis import strategies as st

from chainsight.contract.events import GPS, KIND_OF, SENSOR, EventDecoder, Gps, Scan, Sensor
from chainsight.ingest.columnar import decode_jsonl, decode_lines, scan_kernel
from chainsight.ingest.idset import hash_strings

NOW = ms(0)
decoder = EventDecoder()


def reference(lines: list[bytes]) -> tuple[list[dict], list[dict]]:
    """What msgspec alone makes of `lines`: one dict per valid event, and the dead letters."""
    events, _, dead = decoder.decode_numbered(lines, range(1, len(lines) + 1), NOW)
    rows = []
    for e in events:
        row = {"kind": KIND_OF[type(e)], "ts": e.ts, "lat": None, "lon": None, "temp_c": None,
               "humidity": None, "door": -1, "accuracy": None,
               "device": getattr(e, "device_id", None) if type(e) in (Gps, Sensor) else None,
               "shipment": e.shipment_id, "event_id": e.event_id}
        if type(e) is Gps:
            row.update(lat=e.lat, lon=e.lon, accuracy=e.accuracy_m)
        elif type(e) is Sensor:
            row.update(temp_c=e.temp_c, humidity=e.humidity_pct,
                       door=-1 if e.door_open is None else int(e.door_open))
        elif type(e) is Scan:
            row.update(lat=e.lat if e.lon is not None else None,
                       lon=e.lon if e.lat is not None else None)
        rows.append(row)
    return rows, dead


def columns(lines: list[bytes]) -> tuple[list[dict], list[dict]]:
    """What the columnar decoder makes of `lines`, in the reference's form."""
    x = decode_lines(decoder, lines, 1, NOW)
    devices = iter(x.devices[0][c] for c in x.devices[1].tolist())
    rows = []
    for i in range(len(x.ts)):
        def number(column: np.ndarray) -> float | None:
            value = float(column[i])  # noqa: B023 - used at once
            return None if math.isnan(value) else value
        rows.append({
            "kind": int(x.kind[i]), "ts": int(x.ts[i]), "lat": number(x.lat),
            "lon": number(x.lon), "temp_c": number(x.temp_c), "humidity": number(x.humidity),
            "door": int(x.door[i]), "accuracy": number(x.accuracy),
            "device": next(devices) if x.kind[i] <= SENSOR else None,
            "shipment": x.shipments[0][x.shipments[1][i]],
            "event_id": (int(x.id_hash[0][i]), int(x.id_hash[1][i])) if x.has_id[i] else None})
    return rows, x.dead_letters


def assert_same(lines: list[bytes]) -> None:
    expected, expected_dead = reference(lines)
    for row in expected:
        if row["event_id"] is not None:
            h1, h2 = hash_strings([row["event_id"]])
            row["event_id"] = (int(h1[0]), int(h2[0]))
    got, dead = columns(lines)
    assert got == expected
    assert dead == expected_dead


def fast(lines: list[bytes]) -> np.ndarray:
    """Which lines the scanner decodes itself."""
    text = b"".join(lines)
    ends = np.cumsum([len(x) for x in lines])
    starts = ends - [len(x) for x in lines]
    n = len(lines)
    return scan_kernel(np.frombuffer(text, np.uint8), starts, ends, 65536, NOW + 86_400_000,
                       np.zeros(n, np.int8), np.zeros(n, np.int64),
                       *(np.full(n, np.nan) for _ in range(5)), np.full(n, -1, np.int8),
                       np.full((n, 6), -1, np.int64))


GPS_LINE = (b'{"type":"gps","event_id":"TRK-1-000003","device_id":"TRK-1","shipment_id":"SHP-1",'
            b'"ts":"2026-11-20T07:11:45.528Z","lat":51.385983,"lon":6.70005,"speed_kmh":0.4,'
            b'"heading_deg":72.1,"accuracy_m":3.6}')
SENSOR_LINE = (b'{"type":"sensor","event_id":"RFR-1-0","device_id":"RFR-1","shipment_id":"SHP-1",'
               b'"ts":"2026-11-20T07:10:40.488Z","temp_c":-7.52,"humidity_pct":68.8,'
               b'"door_open":true,"battery_pct":74.0}')


def test_the_wire_format_of_devices_is_scanned_without_msgspec():
    lines = [GPS_LINE, SENSOR_LINE, b' { "type" : "gps" , "device_id" : "G" , "ts" : 1763622000000'
             b' , "lat" : -0.5 , "lon" : 180 } \r']
    assert fast(lines).all()
    assert_same(lines)


def test_everything_else_goes_to_msgspec_and_gives_the_same_result():
    left_to_msgspec = [
        b'{"type":"scan","shipment_id":"S","ts":"2026-11-20T07:00:00Z","site_id":"W",'
        b'"step":"loaded","lat":50.1,"lon":4.2,"event_id":"e1"}',
        GPS_LINE.replace(b'"TRK-1"', b'"TR\\u004b-1"'),  # an escape: the same device
        GPS_LINE.replace(b'"TRK-1"', b'"Tr\xc3\xa4ger"'),  # non-ASCII
        GPS_LINE.replace(b"51.385983", b"5.1385983e1"),  # an exponent
        GPS_LINE.replace(b"51.385983", b"51.38598312345678901"),  # more digits than exact
        GPS_LINE.replace(b"51.385983", b"91"),  # out of range
        GPS_LINE.replace(b"51.385983", b"051.3"),  # a leading zero
        GPS_LINE.replace(b"51.385983", b"51."),
        GPS_LINE.replace(b"51.385983", b'"51.3"'),
        GPS_LINE.replace(b"51.385983", b"null"),
        GPS_LINE.replace(b'"accuracy_m":3.6', b'"temp_c":3.6'),  # another type's field
        GPS_LINE.replace(b'"accuracy_m":3.6', b'"firmware":"1.2"'),  # an unknown field
        GPS_LINE.replace(b'"accuracy_m":3.6', b'"lat":1.5'),  # a repeated field
        GPS_LINE.replace(b'"shipment_id":"SHP-1"', b'"shipment_id":""'),
        GPS_LINE.replace(b'"device_id":"TRK-1",', b""),
        GPS_LINE.replace(b"}", b"} x"),
        GPS_LINE[:-1],
        SENSOR_LINE.replace(b"true", b"1"),
        SENSOR_LINE.replace(b'"temp_c":-7.52,"humidity_pct":68.8,', b""),
        b"", b"   ", b"not json", b"{}", b"[1]",
    ]
    variants = left_to_msgspec + [
        GPS_LINE.replace(b'"accuracy_m":3.6', b'"accuracy_m":null'),
        GPS_LINE.replace(b'"shipment_id":"SHP-1"', b'"shipment_id":null'),
        GPS_LINE.replace(b'"event_id":"TRK-1-000003"', b'"event_id":""'),
        GPS_LINE.replace(b'"event_id":"TRK-1-000003"', b'"event_id":null'),
        SENSOR_LINE.replace(b"true", b"null"),
        SENSOR_LINE.replace(b'"temp_c":-7.52,', b'"temp_c":null,'),
        SENSOR_LINE.replace(b"-7.52", b"-0.0"),
        SENSOR_LINE.replace(b"-7.52", b"-0"),
    ]
    for ts in (b'"2026-11-20T07:10:40Z"', b'"2026-11-20T07:10:40.5+01:30"',
               b'"2026-11-20T07:10:40.123456-05:00"', b'"2026-11-20T07:10:40.1234567Z"',
               b'"2024-02-29T00:00:00Z"', b'"2026-02-29T00:00:00Z"', b'"2026-11-20T24:00:00Z"',
               b'"2026-11-20T07:10:40"', b'"2026-11-20 07:10:40Z"', b'"1969-12-31T23:59:59.9Z"',
               b'"0001-01-01T00:00:00Z"', b'"2027-11-20T07:10:40Z"', b"-1000", b"1.5",
               b"true", b'"2026-11-20T07:10:40z"'):
        variants.append(SENSOR_LINE.replace(b'"2026-11-20T07:10:40.488Z"', ts))
    assert_same(variants)
    assert not fast(left_to_msgspec).any()


numbers = st.one_of(st.integers(-200, 200).map(str), st.floats(-200, 200).map(repr),
                    st.decimals(-200, 200, places=6).map(str),
                    st.sampled_from(["-0", "0.0", "1e2", "1E-2", "00", "1.", "-", "7.", "0.10"]))
ids = st.one_of(st.sampled_from(["TRK-1", "SHP-2", "RFR-3", ""]), st.text(max_size=5)).map(
    lambda t: orjson.dumps(t).decode())
times = st.one_of(
    st.integers(ms(-10_000), ms(2_000)).map(str),
    st.builds("\"{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}{}\"".format,
              st.integers(1, 9999), st.integers(1, 12), st.integers(1, 31), st.integers(0, 24),
              st.integers(0, 59), st.integers(0, 60), st.sampled_from(["", ".5", ".1234567"]),
              st.sampled_from(["Z", "+01:00", "-05:30", "+23:59", ""])))
tokens = st.one_of(numbers, ids, times, st.sampled_from(["null", "true", "false", "{}", "[]"]))
FIELDS_OF = {"gps": ["device_id", "ts", "lat", "lon", "shipment_id", "speed_kmh", "heading_deg",
                     "accuracy_m", "event_id"],
             "sensor": ["device_id", "ts", "temp_c", "humidity_pct", "shipment_id", "door_open",
                        "battery_pct", "event_id"]}


@st.composite
def device_lines(draw: st.DrawFn) -> bytes:
    """A gps or sensor line with random values and field order, now and then broken."""
    kind = draw(st.sampled_from(["gps", "sensor"]))
    fields = draw(st.permutations(FIELDS_OF[kind]))
    fields = fields[:draw(st.integers(len(fields) - 3, len(fields)))]
    value = {"device_id": ids, "shipment_id": st.one_of(ids, st.just("null")),
             "event_id": st.one_of(ids, st.just("null")), "ts": times,
             "door_open": st.sampled_from(["true", "false", "null"])}
    parts = [("type", f'"{kind}"')] + [(f, draw(value.get(f, numbers))) for f in fields]
    if draw(st.booleans()):  # one mutation
        at = draw(st.integers(0, len(parts) - 1))
        name = draw(st.sampled_from([parts[at][0], "extra", "lat", "temp_c"]))
        parts.insert(at, (name, draw(tokens)))
    space = draw(st.sampled_from(["", " ", "\t"]))
    return ("{" + f",{space}".join(f'"{f}":{space}{v}' for f, v in parts) + "}").encode()


@settings(max_examples=300, deadline=None)
@given(st.lists(device_lines(), max_size=8))
def test_random_lines_decode_as_msgspec_decodes_them(lines):
    assert_same(lines)


def test_a_jsonl_text_gives_line_numbers_and_ids_by_first_appearance():
    text = b"\n".join([GPS_LINE, b"oops", SENSOR_LINE, GPS_LINE.replace(b"TRK-1", b"TRK-2"),
                       GPS_LINE]) + b"\n"
    x, n_lines = decode_jsonl(decoder, text, 10, NOW)
    assert n_lines == 5
    assert [d["line"] for d in x.dead_letters] == [11]
    assert x.kind.tolist() == [GPS, SENSOR, GPS, GPS]
    names, codes = x.devices
    assert [names[c] for c in codes] == ["TRK-1", "RFR-1", "TRK-2", "TRK-1"]
    assert names == ["TRK-1", "RFR-1", "TRK-2"]


def test_names_are_numbered_by_first_appearance_across_both_paths():
    scan = (b'{"type":"scan","shipment_id":"SHP-9","ts":"2026-11-20T07:00:00Z","site_id":"W",'
            b'"step":"loaded"}')
    lines = [GPS_LINE, scan, GPS_LINE.replace(b"SHP-1", b"SHP-9"), SENSOR_LINE]
    lines[0] = lines[0].replace(b"SHP-1", b"SHP-9")
    lines.insert(0, scan.replace(b"SHP-9", b"SHP-1"))  # slow, before SHP-1's first fast row
    x = decode_lines(decoder, lines, 1, NOW)
    names, codes = x.shipments
    assert names == ["SHP-1", "SHP-9"]
    assert [names[c] for c in codes] == ["SHP-1", "SHP-9", "SHP-9", "SHP-9", "SHP-1"]


def test_a_message_may_span_lines():
    pretty = orjson.dumps(orjson.loads(GPS_LINE), option=orjson.OPT_INDENT_2)
    assert b"\n" in pretty and fast([pretty]).all()
    assert_same([pretty, SENSOR_LINE])


def test_a_batch_pickles_to_an_equal_batch():
    import pickle

    scan = (b'{"type":"scan","shipment_id":"SHP-9","ts":"2026-11-20T07:00:00Z","site_id":"W",'
            b'"step":"loaded","lat":50.1,"lon":4.2}')
    order = (b'{"type":"order","order_id":"O","shipment_id":"SHP-9","ts":1763622000000,'
             b'"status":"created","promised_by":"2026-11-20T09:00:00Z","device_ids":["T"],'
             b'"lot":{"lot_id":"L","certificates":[{"kind":"k","issuer":"i","id":"c"}]}}')
    x = decode_lines(decoder, [GPS_LINE, scan, b"bad", order, SENSOR_LINE], 1, NOW)
    y = pickle.loads(pickle.dumps(x))
    assert y.business == x.business and list(y.business) == [1, 2]
    assert y.dead_letters == x.dead_letters and y.devices[0] == x.devices[0]
    assert all((getattr(y, c) == getattr(x, c)).all() for c in ("kind", "ts", "door", "has_id"))


def test_columns_of_one_value_pickle_as_that_value_and_come_back_bit_for_bit():
    import pickle

    x = decode_lines(decoder, [GPS_LINE] * 2_000, 1, NOW)
    x.lon[:] = 0.0
    x.lon[7] = -0.0  # equal to 0.0, but not the same bits
    data = pickle.dumps(x)
    y = pickle.loads(data)
    columns = ("kind", "ts", "lat", "lon", "temp_c", "humidity", "door", "accuracy", "has_id")
    for c in columns:
        assert getattr(y, c).dtype == getattr(x, c).dtype
        assert getattr(y, c).tobytes() == getattr(x, c).tobytes(), c
    assert all(a.tobytes() == b.tobytes() for a, b in zip(y.id_hash, x.id_hash, strict=True))
    assert len(data) < 2_000 * 40  # humidity, accuracy, door, ids: a value each


def test_times_before_1970_or_far_ahead_are_left_to_msgspec_and_dead_lettered():
    original = b'"2026-11-20T07:11:45.528Z"'
    times = [b"-5000", b"-1", b'"1969-12-31T23:59:59.999Z"', b'"0001-01-01T00:00:00Z"',
             b"1764057600000000", b"1764057600000000000", b"99999999999999999999999",
             b'"9999-12-31T23:59:59-23:59"']
    lines = [GPS_LINE.replace(original, ts) for ts in times]
    assert not fast(lines).any()
    x = decode_lines(decoder, lines, 1, NOW)
    assert len(x.ts) == 0 and [d["line"] for d in x.dead_letters] == list(range(1, 9))
    assert [d["reason"].split(" is ")[1][:6] for d in x.dead_letters] == (
        ["before"] * 4 + ["more t"] * 2 + ["out of"] + ["more t"])
    zero = GPS_LINE.replace(original, b'"1970-01-01T00:00:00Z"')
    assert fast([zero]).all() and decode_lines(decoder, [zero], 1, NOW).ts.tolist() == [0]


def test_non_ascii_lines_are_left_to_msgspec_which_checks_their_utf8():
    bad = GPS_LINE.replace(b'"accuracy_m":3.6', b'"accuracy_m":3.6,"note":"\xff"')
    good = GPS_LINE.replace(b'"accuracy_m":3.6', '"accuracy_m":3.6,"note":"冷"'.encode())
    assert not fast([bad, good]).any()
    x, n = decode_jsonl(decoder, b"\n".join([bad, good]), 1, NOW)
    assert n == 2 and x.kind.tolist() == [GPS]
    at = bad.index(b"\xff")
    assert [(d["line"], d["reason"]) for d in x.dead_letters] == [
        (1, f"malformed JSON: invalid UTF-8 at byte {at}")]
