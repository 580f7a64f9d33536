"""Configuration: shipped defaults, the config directory and environment, in one place."""

import json

import pytest

from chainsight.config import Settings, load_profiles, load_settings, scenario_dirs
from chainsight.runtimes.kafka.config import load_streams_config


def test_without_a_config_directory_the_defaults_are_the_dataclass_defaults(monkeypatch):
    monkeypatch.delenv("CHAINSIGHT_CONFIG_DIR", raising=False)
    assert load_settings() == Settings()
    assert {"pharma_2_8", "frozen", "chilled_food", "ambient"} <= set(load_profiles())
    assert any((d / "demo.json").is_file() for d in scenario_dirs())


def test_directory_then_environment_then_overrides(monkeypatch, tmp_path):
    (tmp_path / "settings.json").write_text(json.dumps(
        {"_doc": "comments are ignored", "allowed_lateness_min": 2, "sensor_silent_min": 7}))
    (tmp_path / "profiles.json").write_text(json.dumps(
        {"vaccine": {"min_c": 2, "max_c": 8, "excursion_min": 5}}))
    (tmp_path / "streams.json").write_text(json.dumps({"partitions": 3}))
    monkeypatch.setenv("CHAINSIGHT_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("CHAINSIGHT_SENSOR_SILENT_MIN", "9")
    monkeypatch.setenv("CHAINSIGHT_GPS_MAX_SPEED_KMH", "null")
    monkeypatch.setenv("CHAINSIGHT_KAFKA_BOOTSTRAP", "127.0.0.1:1")
    settings = load_settings(escalate_after_min=None, critical_after_min=30)
    assert settings.allowed_lateness_min == 2  # the directory
    assert settings.sensor_silent_min == 9  # the environment beats the directory
    assert settings.gps_max_speed_kmh is None
    assert settings.escalate_after_min == 5 and settings.critical_after_min == 30
    assert "vaccine" in load_profiles() and "pharma_2_8" in load_profiles()
    streams = load_streams_config()
    assert streams.partitions == 3 and streams.bootstrap == "127.0.0.1:1"


@pytest.mark.parametrize("content, error", [
    ('{"allowed_latenes_min": 2}', "unknown settings: allowed_latenes_min"),
    ("[1, 2]", "expected a JSON object"),
    ("{", "cannot read"),
    ('{"allowed_lateness_min": {"a": 1}}', "bad settings setting"),
])
def test_a_bad_settings_file_is_one_clear_line(monkeypatch, tmp_path, content, error):
    (tmp_path / "settings.json").write_text(content)
    monkeypatch.setenv("CHAINSIGHT_CONFIG_DIR", str(tmp_path))
    with pytest.raises(ValueError, match=error) as info:
        load_settings()
    assert "\n" not in str(info.value)


def test_a_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("CHAINSIGHT_ALLOWED_LATENESS_MIN", "five")
    with pytest.raises(ValueError, match="CHAINSIGHT_ALLOWED_LATENESS_MIN='five'"):
        load_settings()
