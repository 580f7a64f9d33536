"""`chainsight simulate --mqtt URL`: the simulated fleet publishes over MQTT, as devices do.

Each event goes, QoS 1, to its device's topic (`chainsight/devices/{device_id}/events`; a
scan to its reader's), orders and anything else to `chainsight/systems/simulator/events`
(`chainsight`: the topic root). The
events of one device that arrive together (an offline tracker's buffered fixes, delivered in
one burst when it is back) go as one message: a JSON array, as real devices send them.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import paho.mqtt.client as mqtt

from chainsight.ingest.mqtt import ROOT, Broker, connect, topic_of

BURST_GAP_MS = 100  # a device's events arriving closer together than this are one burst
MAX_UNACKED = 5000  # messages published but not yet acknowledged by the broker


class MqttSink:
    """A simulator `Sink` (see `sinks.py`) publishing to an MQTT broker; `timed`: `write` also
    gets each line's arrival time (epoch ms), to find the bursts."""

    wants = "lines"
    timed = True

    def __init__(self, broker: Broker, client_id: str = "chainsight-simulator",
                 system: str = "simulator", root: str = ROOT) -> None:
        self.system, self.root = system, root
        self.client = broker.client(client_id)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        connect(self.client, broker)
        self._unacked: deque[mqtt.MQTTMessageInfo] = deque()
        self.messages = 0
        self.bursts = 0

    def write(self, batch: list[str] | list[bytes], arrival: np.ndarray | None = None) -> None:
        """Publish lines in arrival order, a device's burst as one array."""
        lines = [line.encode() if isinstance(line, str) else line for line in batch]
        arrived = [0] * len(lines) if arrival is None else arrival.tolist()
        messages: list[tuple[str, list[bytes]]] = []
        last: dict[str, tuple[int, int]] = {}  # topic -> (its open message, arrival)
        for line, at in zip(lines, arrived, strict=True):
            if not line.strip():
                continue
            topic = topic_of(line, self.system, self.root)
            open_one = last.get(topic)
            if arrival is not None and open_one and at - open_one[1] <= BURST_GAP_MS \
                    and "/devices/" in topic:
                messages[open_one[0]][1].append(line)
                last[topic] = (open_one[0], at)
                continue
            last[topic] = (len(messages), at)
            messages.append((topic, [line]))
        for topic, group in messages:
            payload = group[0] if len(group) == 1 else b"[" + b",".join(group) + b"]"
            self.bursts += len(group) > 1
            self.publish(topic, payload)

    def publish(self, topic: str, payload: bytes) -> None:
        """One message, QoS 1 (waits while too many are unacknowledged)."""
        while len(self._unacked) >= MAX_UNACKED:
            self._unacked.popleft().wait_for_publish(60)
        info = self.client.publish(topic, payload, qos=1)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise RuntimeError(f"MQTT publish to {topic} failed: {mqtt.error_string(info.rc)}")
        self._unacked.append(info)
        self.messages += 1

    def flush(self, timeout_s: float = 60.0) -> None:
        """Wait until the broker has acknowledged every message."""
        while self._unacked:
            info = self._unacked[0]
            info.wait_for_publish(timeout_s)
            if not info.is_published():
                raise RuntimeError(f"the MQTT broker did not acknowledge a message within "
                                   f"{timeout_s:g} s")
            self._unacked.popleft()

    def close(self) -> None:
        self.flush()
        self.client.disconnect()
        self.client.loop_stop()
