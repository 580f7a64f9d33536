"""MQTT payloads to engine lines: topics name devices, arrays are bursts, the rest is dead-lettered
with the topic (no broker needed here; tests/integration/test_mqtt.py runs the real one)."""

import orjson
import pytest
from helpers import at, line, order, reading

from chainsight.engine.core import Engine
from chainsight.ingest.mqtt import Broker, Unpacked, device_topic, system_topic, topic_of

T1 = device_topic("T1")


def unpack(*messages: tuple[str, bytes]) -> Unpacked:
    batch = Unpacked()
    for topic, payload in messages:
        batch.add(topic, payload)
    return batch


def test_one_object_and_an_array_give_their_events_in_order():
    a, b, c = reading(0, 4.0), reading(1, 4.1), reading(2, 4.2)
    batch = unpack((T1, a), (T1, b"[" + b + b", " + c + b"]"))
    assert [orjson.loads(x) for x in batch.lines] == [orjson.loads(x) for x in (a, b, c)]
    assert batch.origins == [(T1, None), (T1, 0), (T1, 1)]
    assert batch.dead == []


@pytest.mark.parametrize(("topic", "payload", "reason"), [
    (T1, b"", "empty message"),
    (T1, b"  \n", "empty message"),
    (T1, b"[1, NaN]", "malformed JSON"),
    (T1, b"[{\"a\": 1}", "malformed JSON"),
    (T1, reading(0, 4.0, device="T2"), "device_id T2 does not match the topic's device T1"),
    (T1, order(), "an order comes from a business system"),
    (T1, line(type="scan", shipment_id="S1", ts=at(0), site_id="H", step="loaded",
              reader_id="R9"), "scan by reader R9 sent on device T1's topic"),
])
def test_refused_payloads_are_dead_lettered_with_their_topic(topic, payload, reason):
    batch = unpack((topic, payload), (T1, reading(0, 4.0)))
    assert len(batch.lines) == 1  # the next message goes on
    [dead] = batch.dead
    assert dead["reason"].startswith(reason) and "\n" not in dead["reason"]
    assert dead["topic"] == topic and dead["index"] is None
    assert dead["payload"].strip() == payload.decode().strip()


def test_an_array_element_for_another_device_is_refused_alone():
    batch = unpack((T1, b"[" + reading(0, 4.0) + b"," + reading(1, 4.0, device="T2") + b"]"))
    assert len(batch.lines) == 1
    assert [(d["index"], d["topic"]) for d in batch.dead] == [(1, T1)]


def test_engine_rejections_map_back_to_topic_and_index():
    naive = line(type="sensor", device_id="T1", ts="2026-11-20T08:00:00", temp_c=4)
    batch = unpack((T1, b"[" + reading(0, 4.0) + b"," + naive + b"]"),
                   (system_topic("erp"), b"{not json"), (system_topic("erp"), order()))
    out = Engine().process(batch.lines, first_line=0)
    for dead in out.dead_letters:
        batch.rejected(dead["line"], dead["reason"])
    assert {(d["topic"], d["index"], d["reason"].split(":")[0]) for d in batch.dead} == {
        (T1, 1, "invalid event"), (system_topic("erp"), None, "malformed JSON")}


def test_publishers_send_each_event_on_its_devices_topic():
    assert topic_of(reading(0, 4.0), "sim") == T1
    assert topic_of(order(), "sim") == system_topic("sim")
    assert topic_of(b"{not json", "sim", root="r") == "r/systems/sim/events"
    scan = line(type="scan", shipment_id="S1", ts=at(0), site_id="H", step="loaded",
                reader_id="R1")
    assert topic_of(scan, "sim") == device_topic("R1")


def test_broker_urls(monkeypatch):
    monkeypatch.delenv("CHAINSIGHT_MQTT_PASSWORD", raising=False)
    b = Broker.parse("mqtt://dev%40x:p%3Aw@broker.example:1884")
    assert (b.host, b.port, b.tls, b.username, b.password) == (
        "broker.example", 1884, False, "dev@x", "p:w")
    assert Broker.parse("mqtts://h").port == 8883 and Broker.parse("mqtts://h").tls
    monkeypatch.setenv("CHAINSIGHT_MQTT_PASSWORD", "secret")
    assert Broker.parse("mqtt://u@h").password == "secret"
    for bad in ("http://h", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(ValueError, match="MQTT URL"):
            Broker.parse(bad)
    with pytest.raises(ValueError, match="go together"):
        Broker.parse("mqtts://h", cert_file="c.pem")
