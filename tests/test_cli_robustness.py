"""Bad command lines and bad files: one line on stderr, exit code 2, nothing written."""

import multiprocessing
import os
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import pytest
from helpers import fix, order

import chainsight.runtimes.replay as replay_module
from chainsight.cli import main
from chainsight.engine.core import Engine

CLI = [sys.executable, "-m", "chainsight.cli"]
EVENTS = b"\n".join([order(), fix(0), fix(1)]) + b"\n"


@pytest.fixture
def events(tmp_path, monkeypatch):
    """A small valid input, in the current directory so relative paths can be tried."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "events.jsonl"
    path.write_bytes(EVENTS)
    return path


def refused(capsys, *argv):
    """Run `chainsight replay ARGV` in-process; return its one stderr line, checking exit 2."""
    code = main(["replay", *argv, "--workers", "0"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("chainsight replay: "), err
    return err


def files(directory):
    return sorted(p.name for p in Path(directory).iterdir())


@pytest.mark.parametrize("argv", [
    ["events.jsonl", "--alerts-out", "events.jsonl"],
    ["events.jsonl", "--dead-letter-out", "./events.jsonl"],
    ["events.jsonl", "--alerts-out", "a.jsonl", "--state-out", "sub/../events.jsonl"],
    ["./events.jsonl", "--eta-out", "events.jsonl"],
])
def test_an_output_that_is_the_input_is_refused_before_reading_it(events, capsys, argv):
    (events.parent / "sub").mkdir()
    err = refused(capsys, *argv)
    assert "is the same file as the input" in err
    assert events.read_bytes() == EVENTS
    assert files(events.parent) == ["events.jsonl", "sub"]


def test_an_output_through_a_symlink_to_the_input_is_refused(events, capsys):
    (events.parent / "link.jsonl").symlink_to(events)
    err = refused(capsys, str(events), "--alerts-out", "a.jsonl", "--state-out", "link.jsonl")
    assert "--state-out link.jsonl is the same file as the input" in err
    assert events.read_bytes() == EVENTS
    assert files(events.parent) == ["events.jsonl", "link.jsonl"]


def test_two_outputs_naming_one_file_are_refused(events, capsys):
    err = refused(capsys, "events.jsonl", "--alerts-out", "out.jsonl",
                  "--dead-letter-out", str(events.parent / "out.jsonl"))
    assert "--dead-letter-out" in err and "--alerts-out" in err
    assert files(events.parent) == ["events.jsonl"]


def test_an_output_that_is_the_fences_file_is_refused(events, capsys):
    fences = events.parent / "fences.geojson"
    fences.write_text('{"type": "FeatureCollection", "features": []}')
    err = refused(capsys, "events.jsonl", "--fences", "fences.geojson",
                  "--alerts-out", "fences.geojson")
    assert "same file as --fences" in err
    assert fences.read_text() == '{"type": "FeatureCollection", "features": []}'


@pytest.mark.parametrize("state_out, reason", [
    ("missing/state.json", "no such directory missing"),
    (".", "is a directory"),
])
def test_an_output_that_cannot_be_created_is_refused_before_the_replay(events, capsys,
                                                                       state_out, reason):
    err = refused(capsys, "events.jsonl", "--alerts-out", "a.jsonl", "--dead-letter-out",
                  "d.jsonl", "--state-out", state_out, "--eta-out", "eta.jsonl")
    assert f"cannot write {Path(state_out)}: {reason}" in err
    assert files(events.parent) == ["events.jsonl"]  # no empty alerts or dead-letter file


def test_an_output_inside_a_file_is_refused(events, capsys):
    err = refused(capsys, "events.jsonl", "--alerts-out", "events.jsonl/a.jsonl")
    assert "cannot write events.jsonl/a.jsonl: no such directory events.jsonl" in err
    assert events.read_bytes() == EVENTS


@pytest.mark.parametrize("option", [[], ["--fences"], ["--profiles"]])
def test_a_missing_or_directory_input_says_which_and_why(events, capsys, option):
    (events.parent / "adir").mkdir()
    inputs = ["events.jsonl", *option] if option else []
    err = refused(capsys, *inputs, "nothere.json", "--alerts-out", "a.jsonl")
    assert err == "chainsight replay: cannot read nothere.json: no such file or directory\n"
    err = refused(capsys, *inputs, "adir", "--alerts-out", "a.jsonl")
    assert err == "chainsight replay: cannot read adir: is a directory\n"
    assert files(events.parent) == ["adir", "events.jsonl"]


def test_a_malformed_profiles_file_is_one_line(events, capsys):
    (events.parent / "profiles.json").write_text('{"cold": {"min_c": 2,')
    err = refused(capsys, "events.jsonl", "--profiles", "profiles.json", "--alerts-out", "a.jsonl")
    assert "cannot read profiles.json" in err
    assert files(events.parent) == ["events.jsonl", "profiles.json"]


def test_a_directory_input_in_a_subprocess_prints_no_traceback(events):
    (events.parent / "adir").mkdir()
    proc = subprocess.run([*CLI, "replay", "adir", "--alerts-out", "a.jsonl", "--workers", "2"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert proc.returncode == 2
    assert proc.stderr == "chainsight replay: cannot read adir: is a directory\n"


def test_a_read_error_in_a_decode_process_is_one_line_naming_the_path(tmp_path, capfd):
    """Workers open the file per task: an error reaches the caller, not the worker's stderr
    (a failing initializer would print a traceback and break the executor)."""
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    start = (tmp_path, Engine().ingest.decoder, 0, False, str(tmp_path))
    with ProcessPoolExecutor(1, context, initializer=replay_module._start_decode_process,
                             initargs=start) as pool:
        with pytest.raises(OSError, match=f"^cannot read {tmp_path}: is a directory$"):
            pool.submit(replay_module._extract_parcel, 0, 10).result(timeout=30)
    assert capfd.readouterr().err == ""


def test_a_decode_process_that_dies_ends_the_replay_with_one_line(tmp_path, monkeypatch):
    """Killed, or out of memory: the replay stops with a one-line error instead of hanging."""
    events = tmp_path / "events.jsonl"
    events.write_bytes(EVENTS)
    monkeypatch.setattr(replay_module, "_extract_range", lambda start, end: os._exit(9))
    with pytest.raises(OSError, match="^a decode process died .*--workers 0"):
        replay_module.replay(events, Engine(), workers=1)


def test_a_read_error_in_the_replay_names_the_path(tmp_path):
    with pytest.raises(OSError, match=f"^cannot read {tmp_path}: is a directory$"):
        replay_module.replay(tmp_path, Engine(), workers=0)


@pytest.mark.parametrize("workers", [0, 2])
def test_a_byte_order_mark_at_the_start_is_ignored(tmp_path, workers):
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\xef\xbb\xbf" + EVENTS + b"{bad\n")
    dead = tmp_path / "dlq.jsonl"
    result = replay_module.replay(events, Engine(), dead_letter_out=dead, workers=workers)
    assert result.events == 3 and result.rejected == 1
    assert dead.read_text().count("\n") == 1
    assert '"line":4' in dead.read_text()  # lines are still counted from the first one


def simulate_refused(capsys, *argv):
    """Run `chainsight simulate ARGV` in-process; return its one stderr line, checking exit 2."""
    code = main(["simulate", *argv])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("chainsight simulate: "), err
    return err


def test_simulate_with_a_profile_beyond_the_builtins(tmp_path, capsys):
    scenario = tmp_path / "gdp.json"
    scenario.write_text('{"shipments": 8, "hubs": 3, "customers": 4, "duration": "40m",'
                        ' "profile_mix": {"pharma_2_8_gdp": 1}}')
    out = tmp_path / "events.jsonl"
    assert main(["simulate", "--scenario", str(scenario), "--out", str(out)]) == 0
    assert b'"product_profile":"pharma_2_8_gdp"' in out.read_bytes()
    assert b'"type":"sensor"' in out.read_bytes()


def test_simulate_refuses_a_profile_no_file_defines(tmp_path, capsys):
    scenario = tmp_path / "s.json"
    scenario.write_text('{"profile_mix": {"pharma_2_8": 1, "pharma_9_9": 1}}')
    err = simulate_refused(capsys, "--scenario", str(scenario), "--out", str(tmp_path / "o"))
    assert "unknown product profile 'pharma_9_9'" in err
    assert files(tmp_path) == ["s.json"]


@pytest.mark.parametrize("text, message", [
    ('{"shipments": 3,', "cannot read"),
    ("[1, 2]", "expected a JSON object"),
    ('{"shipments": "ten"}', "'shipments' must be an integer"),
    ('{"excursion_factor": [2]}', "'excursion_factor' must be a [low, high] pair"),
    ('{"profile_mix": {"frozen": "x"}}', "'profile_mix' must be an object of weights"),
    ('{"destination_mix": {}}', "'destination_mix' must be an object of weights"),
])
def test_simulate_refuses_a_malformed_scenario(tmp_path, capsys, text, message):
    scenario = tmp_path / "s.json"
    scenario.write_text(text)
    err = simulate_refused(capsys, "--scenario", str(scenario), "--out", str(tmp_path / "o"))
    assert message in err
    assert files(tmp_path) == ["s.json"]


def test_simulate_refuses_an_output_it_cannot_write(tmp_path, capsys):
    err = simulate_refused(capsys, "--scenario", "smoke", "--shipments", "3", "--out",
                           str(tmp_path / "o.jsonl"), "--ground-truth", str(tmp_path / "no/t.json"))
    assert f"cannot write {tmp_path / 'no/t.json'}" in err


def test_simulate_with_malformed_profiles_is_one_line(tmp_path):
    (tmp_path / "profiles.json").write_text('{"frozen": {"min_c": -30,')
    proc = subprocess.run([*CLI, "simulate", "--scenario", "smoke", "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path),
                               "CHAINSIGHT_CONFIG_DIR": str(tmp_path)})
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"chainsight simulate: cannot read {tmp_path / 'profiles.json'}")
    assert files(tmp_path) == ["profiles.json"]
