"""Whatever bytes arrive, every non-blank line is accepted or dead-lettered exactly once, with a
one-line reason, and nothing escapes the decoder or the engine."""

import msgspec
import orjson
from helpers import at, ms
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chainsight.contract.events import EventDecoder
from chainsight.engine.core import Engine
from chainsight.ingest.columnar import decode_jsonl, decode_lines
from chainsight.runtimes.replay import replay

NOW = ms(0)
decoder = EventDecoder()
SETTINGS = settings(max_examples=250, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

VALID = [
    orjson.dumps({"type": "gps", "event_id": "G1-1", "device_id": "G1", "shipment_id": "S1",
                  "ts": at(-5), "lat": 51.38, "lon": 6.7, "speed_kmh": 40.5,
                  "heading_deg": 72.1, "accuracy_m": 3.6}),
    orjson.dumps({"type": "sensor", "device_id": "T1", "shipment_id": "S1", "ts": ms(-4),
                  "temp_c": 4.5, "humidity_pct": 60.0, "door_open": False, "battery_pct": 80}),
    orjson.dumps({"type": "scan", "shipment_id": "S1", "ts": at(-3), "site_id": "W1",
                  "step": "loaded", "reader_id": "R1", "lat": 50.1, "lon": 4.2}),
    orjson.dumps({"type": "order", "order_id": "O1", "shipment_id": "S1", "ts": at(-60),
                  "status": "in_transit", "product_profile": "pharma_2_8",
                  "promised_by": at(600), "origin": {"lat": 50, "lon": 4},
                  "destination": {"lat": 52, "lon": 5}, "weight_kg": 120, "mode": "road",
                  "device_ids": ["T1", "G1"],
                  "lot": {"lot_id": "L1", "certificates": [{"kind": "GMP", "issuer": "EMA",
                                                            "id": "C-1"}]}}),
]
FIELDS = ["type", "ts", "lat", "lon", "device_id", "shipment_id", "temp_c", "humidity_pct",
          "door_open", "event_id", "step", "status", "promised_by", "origin", "lot",
          "device_ids", "extra"]
TOKENS = [b"null", b"true", b"0", b"-1", b"-5000", b"1.5", b"1e999", b"-1e999", b"NaN",
          b"-Infinity", b"99999999999999999999999", b"1764057600000000",
          b"1764057600000000000", b'""', b'"x"', b"[]", b"{}", b'"9999-12-31T23:59:59-23:59"',
          b'"0001-01-01T00:00:00Z"', b'"2026-11-20T08:00:00"', b'"\xff"', b'"\\ud800"',
          b"[" * 1_500 + b"]" * 1_500, b'"a\\nb"', b"\x0c"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                max_size=4),
    max_leaves=12)
events_of_random_json = st.builds(
    lambda base, extra: msgspec.json.encode({**orjson.loads(base), **extra}),
    st.sampled_from(VALID),
    st.dictionaries(st.sampled_from(FIELDS) | st.text(max_size=6), json_values, max_size=3))


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A valid event line with a few random edits: bytes flipped, inserted or deleted, a cut, a
    field's value swapped for another token."""
    raw = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 3))):
        edit = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "swap"]))
        p = draw(st.integers(0, max(len(raw) - 1, 0)))
        if edit == "flip" and raw:
            raw[p] = draw(st.integers(0, 255))
        elif edit == "insert":
            raw[p:p] = draw(st.binary(min_size=1, max_size=4) | st.sampled_from(TOKENS))
        elif edit == "delete":
            del raw[p:p + draw(st.integers(1, 8))]
        elif edit == "truncate":
            del raw[p:]
        else:
            name = b'"%s":' % draw(st.sampled_from(FIELDS)).encode()
            start = raw.find(name)
            if start >= 0:
                value = start + len(name)
                end = min((i for i in (raw.find(b",", value), raw.find(b"}", value)) if i >= 0),
                          default=len(raw))
                raw[value:end] = draw(st.sampled_from(TOKENS))
            else:
                raw[-1:-1] = b"," + name + draw(st.sampled_from(TOKENS))
    return bytes(raw)


lines_of = st.lists(st.one_of(st.binary(max_size=40), events_of_random_json, mutated(),
                              st.sampled_from(VALID), st.sampled_from([b"", b" \r", b"\x0c"])),
                    max_size=12)


def blank(raw: bytes) -> bool:
    return not raw.strip(b" \t\r\n")


def assert_accounted(lines: list[bytes], accepted: int, dead: list[dict]) -> None:
    """Each non-blank line accepted or dead-lettered once, with its payload and one-line reason."""
    non_blank = [n for n, raw in enumerate(lines, 1) if not blank(raw)]
    assert accepted + len(dead) == len(non_blank)
    assert len({d["line"] for d in dead}) == len(dead) and {d["line"] for d in dead} <= set(
        non_blank)
    for d in dead:
        assert d["payload"] == lines[d["line"] - 1].decode(errors="replace").rstrip("\r\n")
        assert d["reason"] and len(d["reason"].splitlines()) == 1


@SETTINGS
@given(lines_of)
def test_every_line_of_a_batch_is_accepted_or_dead_lettered_once(lines):
    x = decode_lines(decoder, lines, 1, NOW)
    assert_accounted(lines, len(x.ts), x.dead_letters)
    assert ((x.ts >= 0) & (x.ts <= NOW + decoder.future_tolerance_ms)).all()


@SETTINGS
@given(lines_of)
def test_every_physical_line_of_a_jsonl_text_is_accounted_for(lines):
    text = b"\n".join(lines)
    physical = text.split(b"\n")
    x, n = decode_jsonl(decoder, text, 1, NOW)
    if physical[-1] == b"":  # a final line break ends the last line
        physical.pop()
    assert n == len(physical)
    assert_accounted(physical, len(x.ts), x.dead_letters)


@SETTINGS
@given(lines_of)
def test_the_engine_counts_every_line_as_an_event_or_a_rejection(lines):
    engine = Engine()
    out = engine.process(lines, 1, NOW)
    engine.flush()
    assert_accounted(lines, engine.counters["events"], out.dead_letters)
    assert engine.counters["rejected"] == len(out.dead_letters)


def test_the_mutations_reach_every_outcome():
    """The strategies are not vacuous: valid events, fast-path rows and every reason family."""
    lines = [*VALID, VALID[0].replace(b"51.38", b"NaN"), VALID[1][:-3], b"\xff",
             VALID[1].replace(b'"T1"', b'"T1","x":' + TOKENS[-3]),
             VALID[0].replace(at(-5).encode(), b"-5000")]
    x = decode_lines(decoder, lines, 1, NOW)
    assert len(x.ts) == 5 and [d["line"] for d in x.dead_letters] == [5, 6, 7, 9]
    assert_accounted(lines, len(x.ts), x.dead_letters)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(lines_of)
def test_replay_accounts_for_every_line_of_a_file(tmp_path, lines):
    """Through `chainsight replay` itself: the file's lines are events or dead letters (with
    their physical line numbers), the outputs are written, and nothing escapes."""
    events, dlq, state = tmp_path / "events.jsonl", tmp_path / "dlq.jsonl", tmp_path / "s.json"
    events.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    result = replay(events, Engine(), tmp_path / "alerts.jsonl", dlq, state, workers=0)
    dead = [orjson.loads(x) for x in dlq.read_bytes().splitlines()]
    physical = events.read_bytes().split(b"\n")[:-1]
    assert_accounted(physical, result.events, dead)
    assert orjson.loads(state.read_bytes())["counters"]["rejected"] == len(dead)
