"""The engine's narrow API: runtimes, replay, the demo and the end-to-end benchmarks use it only."""

import ast
from pathlib import Path

import pytest

from chainsight.engine.core import Engine

ROOT = Path(__file__).resolve().parent.parent
# migrate.py is exempt: it upgrades the internals of engines pickled by the previous version.
SHELLS = sorted({*ROOT.glob("chainsight/runtimes/**/*.py"), *ROOT.glob("chainsight/outputs/*.py"),
                 *ROOT.glob("chainsight/api/**/*.py"), ROOT / "chainsight/demo.py",
                 ROOT / "chainsight/cli.py", ROOT / "benchmarks/bench_replay.py",
                 ROOT / "benchmarks/bench_live.py",
                 ROOT / "benchmarks/bench_kafka.py"}
                - {ROOT / "chainsight/runtimes/kafka/migrate.py"})
# What a shell may use of an engine: the methods and read-only queries of the API.
API = {"process", "process_extracted", "advance", "flush", "apply", "replace_fences",
       "decoder", "counters", "metrics", "alerts", "alert", "audit_trail", "verify_audit",
       "shipments", "shipment_views", "snapshot", "linked_shipment", "has_shipment",
       "shipment_count", "settings", "dump_state", "load_state", "ended", "stream_time",
       "customer_of", "last_seen", "order_facts", "shipment_of_sscc", "record_head", "profiles",
       "record_heads",
       "export_eta_model", "import_eta_model", "eta_totals"}


def engine_uses(path: Path) -> list[tuple[int, str]]:
    """(line, attribute) of every `<...>engine.<attribute>` in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute):
            owner = node.value
            name = owner.attr if isinstance(owner, ast.Attribute) else getattr(owner, "id", "")
            if name in ("engine", "eng"):
                found.append((node.lineno, node.attr))
    return found


@pytest.mark.parametrize("path", SHELLS, ids=lambda p: str(p.relative_to(ROOT)))
def test_shells_use_only_the_engine_api(path):
    outside = [(line, attr) for line, attr in engine_uses(path) if attr not in API]
    assert outside == [], f"{path.name} reaches into the engine: {outside}"


def test_the_api_names_exist_on_the_engine():
    engine = Engine()
    missing = [name for name in API if not hasattr(engine, name)]
    assert missing == []


def test_the_check_sees_a_private_attribute(tmp_path):
    module = tmp_path / "shell.py"
    module.write_text("def f(part):\n    return len(part.engine.state.shipments)\n")
    assert engine_uses(module) == [(2, "state")]
