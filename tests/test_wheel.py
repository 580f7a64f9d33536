"""An installed wheel (not the editable checkout) runs with the defaults shipped inside it."""

import os
import subprocess
import sys
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "tests" / "data" / "snapshot-v2-events.jsonl"


def test_an_installed_wheel_replays_and_simulates_with_its_shipped_defaults(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(tmp_path / "dist"), str(ROOT)], check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("chainsight-*.whl")
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(site), str(wheel)], check=True, capture_output=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINSIGHT_")}
    env["PYTHONPATH"] = str(site)  # ahead of the editable checkout on the path

    def chainsight(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "chainsight.cli", *args], cwd=tmp_path,
                              env=env, capture_output=True, text=True, timeout=300)

    where = subprocess.run([sys.executable, "-c", "import chainsight; print(chainsight.__file__)"],
                           cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert where.stdout.startswith(str(site))
    assert (site / "chainsight" / "api" / "static" / "map.html").is_file()  # the pages, built
    run = chainsight("replay", str(EVENTS), "--alerts-out", "alerts.jsonl", "--state-out",
                     "state.json")
    assert run.returncode == 0, run.stderr
    alerts = [orjson.loads(x) for x in (tmp_path / "alerts.jsonl").read_bytes().splitlines()]
    assert any(a["kind"] == "temperature_excursion" for a in alerts)  # pharma_2_8, shipped
    state = orjson.loads((tmp_path / "state.json").read_bytes())
    assert {s["profile"] for s in state["shipments"].values()} >= {"pharma_2_8"}
    sim = chainsight("simulate", "--scenario", "smoke", "--shipments", "5", "--out", "sim.jsonl")
    assert sim.returncode == 0, sim.stderr
    assert (tmp_path / "sim.jsonl").stat().st_size > 0
