"""docs/contract.md agrees with the code (and with the contract's fixed lists) on facts that drift:
event types and their fields, scan steps, order statuses, modes, fence kinds, alert kinds, states,
severities and transitions, profile numbers, default settings, dead-letter reasons, the control
records and the examples themselves (every example event decodes, every command parses)."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path

import msgspec
import orjson
import pytest

from chainsight.alerts import book as book_module
from chainsight.api.models import AlertKind, Severity
from chainsight.config import Settings, load_profiles, load_settings
from chainsight.contract.commands import Acknowledge, ReplaceFences, Resolve, decode_command
from chainsight.contract.events import (
    ORDER_STATUSES,
    SCAN_STEPS,
    EventDecoder,
    Gps,
    Order,
    Scan,
    Sensor,
)
from chainsight.geofence import FenceSet
from chainsight.geofence.fences import KINDS as FENCE_KINDS
from chainsight.geofence.tracker import KIND_NAMES
from chainsight.rules.base import TEMPERATURE
from chainsight.rules.silence import SilenceRule
from chainsight.runtimes.kafka import control, partition

DOC_PATH = Path(__file__).resolve().parents[1] / "docs" / "contract.md"
DOC = DOC_PATH.read_text(encoding="utf-8")
NOW = 1_795_593_600_000  # 2026-11-25T08:00:00Z: the examples' day, so none is "in the future"

# Fixed by the contract (v2); the doc must state exactly these.
CONTRACT_TYPES = ["gps", "sensor", "scan", "order"]
CONTRACT_KINDS = ["temperature_excursion", "geofence_enter", "geofence_exit", "dwell_exceeded",
                  "sensor_silent", "eta_late", "route_deviation"]
CONTRACT_STATES = ["open", "acknowledged", "resolved", "retracted"]
CONTRACT_SEVERITIES = ["info", "warning", "critical"]
CONTRACT_BUILTINS = {"pharma_2_8": (2, 8, 15), "frozen": (-30, -18, 15),
                     "chilled_food": (0, 5, 30), "ambient": (15, 25, 60)}
TRANSITIONS = ["opened", "reopened", "acknowledged", "resolved", "resolved_manually", "notice",
               "retracted"]
QUOTED_SETTINGS = {"allowed_lateness_min": 5, "sensor_silent_min": 10, "future_tolerance_h": 24,
                   "max_payload_bytes": 65536}
STRUCTS = {"gps": Gps, "sensor": Sensor, "scan": Scan, "order": Order}


# --- reading the doc ------------------------------------------------------------------------

def section(title: str) -> str:
    """The text under the heading starting with `title`, up to the next heading of its level or
    above."""
    lines = DOC.splitlines()
    for i, text in enumerate(lines):
        match = re.match(r"(#+) (.*)", text)
        if match and match.group(2).startswith(title):
            level = len(match.group(1))
            end = next((j for j in range(i + 1, len(lines))
                        if re.match(rf"#{{1,{level}}} ", lines[j])), len(lines))
            return "\n".join(lines[i + 1:end])
    raise AssertionError(f"docs/contract.md has no section {title!r}")


def ticks(text: str) -> list[str]:
    return re.findall(r"`([^`]+)`", text)


def tables(text: str) -> list[list[list[str]]]:
    """Markdown tables as lists of rows of cells (header first, separator dropped)."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for text_line in text.splitlines() + [""]:
        if text_line.startswith("|"):
            cells = [c.strip() for c in text_line.strip().strip("|").split("|")]
            if not all(re.fullmatch(r"-+", c) for c in cells):
                current.append(cells)
        elif current:
            found.append(current)
            current = []
    return found


def table_with(text: str, header: str) -> list[list[str]]:
    """The body of the first table in `text` whose first header cell is `header`."""
    for table in tables(text):
        if table[0][0] == header:
            return table[1:]
    raise AssertionError(f"no table headed {header!r}")


def row(body: list[list[str]], first: str) -> list[str]:
    for cells in body:
        if first in ticks(cells[0]):
            return cells
    raise AssertionError(f"no row for {first!r}")


def literal_values(tp: object) -> list[str]:
    """The values of the Literal inside an annotation such as `Literal[...] | None`."""
    if typing.get_origin(tp) is typing.Literal:
        return list(typing.get_args(tp))
    return [v for arg in typing.get_args(tp) for v in literal_values(arg)]


def json_lines(text: str) -> list[dict]:
    """The one-line JSON objects of the ```json blocks in `text`."""
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    return [orjson.loads(x) for b in blocks for x in b.splitlines() if x.startswith("{\"")
            and x.rstrip().endswith("}")]


# --- input events ---------------------------------------------------------------------------

def test_event_types_are_the_contracts_and_the_codes():
    documented = re.findall(r"^### `(\w+)`:", section("Input events"), re.M)
    assert documented == CONTRACT_TYPES
    assert [s.__struct_config__.tag for s in STRUCTS.values()] == CONTRACT_TYPES
    assert ticks(section("Common rules").split("**`ts`**")[0])[-4:] == CONTRACT_TYPES


@pytest.mark.parametrize("kind", CONTRACT_TYPES)
def test_required_and_optional_fields_match_the_structs(kind):
    body = table_with(section(f"`{kind}`"), "field")
    required = {f for cells in body if cells[2] == "required" for f in ticks(cells[0])}
    documented = {f for cells in body for f in ticks(cells[0])}
    struct = STRUCTS[kind]
    fields = msgspec.structs.fields(struct)
    assert required == {f.name for f in fields if f.required}
    assert {f.name for f in fields} - {"event_id"} <= documented


def test_scan_steps_order_statuses_and_modes():
    scan = table_with(section("`scan`"), "field")
    assert ticks(row(scan, "step")[1]) == list(SCAN_STEPS)
    order = table_with(section("`order`"), "field")
    assert ticks(row(order, "status")[1]) == list(ORDER_STATUSES)
    hints = typing.get_type_hints(Order, include_extras=True)
    assert ticks(row(order, "mode")[1]) == literal_values(hints["mode"]) \
        == ["road", "rail", "sea", "air"]


def test_example_events_decode_cleanly():
    decoder = EventDecoder()
    for kind in CONTRACT_TYPES:
        examples = json_lines(section(f"`{kind}`"))
        assert examples, f"no example for {kind}"
        lines = [orjson.dumps(e) for e in examples]
        events, dead = decoder.decode_many(lines, now=NOW)
        assert not dead
        assert [type(e) for e in events] == [STRUCTS[kind]] * len(examples)


def test_both_time_forms_and_the_naive_one():
    rules = section("Common rules")
    decoder = EventDecoder()
    forms = [t for t in ticks(rules) if re.fullmatch(r'"?2026[^`]*"?|\d{13}', t)]
    assert len(forms) == 4  # two with offsets, epoch ms, the naive one
    *good, naive = forms
    base = {"type": "gps", "device_id": "T", "lat": 1, "lon": 2}
    for ts in good:
        decoder.decode(orjson.dumps({**base, "ts": orjson.loads(ts)}), now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        decoder.decode(orjson.dumps({**base, "ts": orjson.loads(naive)}), now=NOW)


# --- dead letters ---------------------------------------------------------------------------

BAD_LINES = [
    b'{"type": "gps", "device_id": ',
    b'{"type":"sensor","device_id":"T\xff","ts":1795593600000,"temp_c":4}',
    b'{"type":"gps","device_id":"T","ts":1795593600000,"lat":NaN,"lon":1}',
    b'{"type":"gps","device_id":"T","ts":1795593600000,"lon":1}',
    b'{"type":"gps","device_id":"T","ts":1795593600000,"lat":95,"lon":1}',
    b'{"type":"gps","device_id":"T","ts":"2026-11-25T08:00:00","lat":5,"lon":1}',
    b'{"type":"boat","ts":1795593600000}',
    b'{"type":"scan","shipment_id":"S","ts":1795593600000,"site_id":"W","step":"flown"}',
    b'{"type":"sensor","device_id":"T","ts":1795593600000}',
    b'{"type":"gps","device_id":"T","ts":"2026-11-27T08:00:00Z","lat":5,"lon":1}',
    b'{"type":"sensor","device_id":"T","ts":1795593600000,"temp_c":4,"x":"' + b"y" * 70000
    + b'"}',
]


def test_dead_letter_reasons_are_documented():
    body = table_with(section("Dead letters"), "cause")
    patterns = [re.compile(".*".join(map(re.escape, ticks(cells[1])[0].split("…"))) + "$")
                for cells in body]
    _, dead = EventDecoder().decode_many(BAD_LINES, now=NOW)
    assert [d["line"] for d in dead] == list(range(1, len(BAD_LINES) + 1))
    for d in dead:
        assert any(p.match(d["reason"]) for p in patterns), d["reason"]
    assert '"empty message"' in inspect.getsource(partition)
    assert any(p.match("empty message") for p in patterns)


def test_dead_letter_example_is_what_the_engine_writes():
    (example,) = json_lines(section("Dead letters"))
    (dead,) = EventDecoder().decode_many([example["payload"].encode()], now=NOW)[1]
    assert dead["reason"] == example["reason"]
    assert set(example) == {"reason", "payload", "line"}


# --- settings and profiles ------------------------------------------------------------------

def test_quoted_settings_are_the_defaults():
    body = table_with(DOC.split("## Input events")[0], "setting")
    quoted = {ticks(cells[0])[0]: float(cells[1]) for cells in body}
    assert QUOTED_SETTINGS.items() <= quoted.items()
    defaults, shipped = Settings(), load_settings()
    for name, value in quoted.items():
        assert getattr(defaults, name) == value, name
        assert getattr(shipped, name) == value, name
    kib = defaults.max_payload_bytes // 1024
    assert f"{kib} KiB" in section("Dead letters")
    assert f"more than {defaults.future_tolerance_h:g} h in the future" in section("Dead letters")
    assert f"default {defaults.allowed_lateness_min:g} minutes" in section("Event time")
    assert f"for {defaults.sensor_silent_min:g} minutes" in section("Alert kinds")


def test_profile_numbers_match_the_shipped_profiles():
    shipped = load_profiles()
    documented: dict[str, dict[str, str]] = {}
    text = section("Product profiles")
    for table in tables(text):
        columns = [(ticks(c) or [c])[0] for c in table[0]]
        for cells in table[1:]:
            documented[ticks(cells[0])[0]] = dict(zip(columns[1:], cells[1:], strict=True))
    assert set(documented) == set(shipped)
    for name, values in documented.items():
        for column, cell in values.items():
            expected = getattr(shipped[name], column)
            assert (None if cell == "" else float(cell)) == expected, (name, column)
    builtins = table_with(text, "profile")
    assert {ticks(c[0])[0]: tuple(float(x) for x in c[1:]) for c in builtins} \
        == CONTRACT_BUILTINS
    for optional in ("cumulative_budget_min", "door_open_max_min", "mkt_min_h", "humidity_min",
                     "humidity_max"):
        assert f"`{optional}`" in text


def test_fence_kinds():
    text = section("Geofences")
    listed = re.search(r"`properties\.kind` \(([^)]*)\)", text, re.S)
    assert listed and ticks(listed.group(1)) == list(FENCE_KINDS)
    (example,) = re.findall(r"```json\n(.*?)```", text, re.S)
    fences = FenceSet.from_geojson(orjson.loads(example))
    assert len(fences) == 2


# --- alerts ---------------------------------------------------------------------------------

def test_alert_kinds():
    kinds = [ticks(cells[0])[0] for cells in table_with(section("Alert kinds"), "kind")]
    assert kinds and sorted(kinds) == sorted(CONTRACT_KINDS)
    assert sorted(typing.get_args(AlertKind)) == sorted(CONTRACT_KINDS)  # webhook filters
    from_code = {TEMPERATURE, SilenceRule.kind, *KIND_NAMES, *book_module.GEOFENCE_KINDS}
    assert from_code <= set(kinds)
    fields = table_with(section("Alerts"), "field")
    geofence = set(ticks(row(fields, "fence_id")[1]))
    assert geofence == book_module.GEOFENCE_KINDS


def test_alert_states_and_severities():
    fields = table_with(section("Alerts"), "field")
    assert ticks(row(fields, "state")[1]) == CONTRACT_STATES
    assert ticks(row(fields, "severity")[1]) == CONTRACT_SEVERITIES
    assert list(typing.get_args(Severity)) == CONTRACT_SEVERITIES  # lowest first
    for cells in table_with(section("Alert kinds"), "kind"):
        assert set(ticks(cells[1])) <= set(CONTRACT_SEVERITIES)


def test_transitions_and_notifications():
    text = section("Alerts")
    body = table_with(text, "transition")
    assert [ticks(cells[0])[0] for cells in body] == TRANSITIONS
    source = inspect.getsource(book_module)
    for name in TRANSITIONS:
        if name != "retracted":  # live results' withdrawals: not in the alert book yet
            assert f'"{name}"' in source, name
    note = text.split("**Notifications**")[1].split("\n\n")[0]
    assert {t for t in ticks(note) if t in {"escalated", "severity_raised"}} \
        == book_module.NOTIFICATIONS


# --- Kafka ----------------------------------------------------------------------------------

def test_control_records_and_commands():
    text = section("On Kafka")
    assert f"`{control.HEADER}`" in text
    kinds = [ticks(cells[0])[0] for cells in table_with(text, "kind")]
    assert kinds == [control.TICK.decode(), control.FLUSH.decode(), "command"]
    commands = [decode_command(orjson.dumps(c)) for c in json_lines(text)]
    assert [type(c) for c in commands] == [Acknowledge, Resolve, ReplaceFences]
    dead = re.search(r"`<prefix>\.dead-letter` \| *\| `(\{[^`]*\})`", text)
    assert dead
    writer = inspect.getsource(partition.Partition._dead)
    for field in ("reason", "payload", "topic", "partition", "offset", "key"):
        assert f'"{field}"' in dead.group(1)
        assert f'"{field}"' in writer
