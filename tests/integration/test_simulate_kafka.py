"""`chainsight simulate --kafka`: the simulator feeds the distributed runtime's events topic."""

import os
import subprocess
import sys

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient


def test_simulate_sends_every_line_keyed_to_the_events_topic(kafka_bootstrap, topic_prefix):
    env = {**os.environ, "CHAINSIGHT_KAFKA_BOOTSTRAP": kafka_bootstrap,
           "CHAINSIGHT_TOPIC_PREFIX": topic_prefix}
    proc = subprocess.run([sys.executable, "-m", "chainsight.cli", "simulate", "--scenario",
                           "smoke", "--kafka"], capture_output=True, text=True, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = int(proc.stderr.split(": ")[1].split(" lines")[0].replace(",", ""))
    topics = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10).topics
    events = topics[f"{topic_prefix}.events"]
    partitions = len(events.partitions)
    assert partitions > 1
    consumer = Consumer({"bootstrap.servers": kafka_bootstrap, "group.id": topic_prefix})
    try:
        sizes = [consumer.get_watermark_offsets(TopicPartition(f"{topic_prefix}.events", p),
                                                timeout=10) for p in range(partitions)]
    finally:
        consumer.close()
    per_partition = [hi - lo for lo, hi in sizes]
    assert sum(per_partition) == lines + partitions  # each partition: its events + end marker
    assert min(per_partition) > 1  # keyed by shipment: spread over every partition
