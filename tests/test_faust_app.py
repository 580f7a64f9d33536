"""`add_chainsight` on an app of one's own (the README's example), without a broker: what it
registers. The runtime itself is tested end to end in tests/integration/test_faust.py."""

import faust

from chainsight.runtimes.faust import add_chainsight
from chainsight.runtimes.kafka.config import StreamsConfig


def test_add_chainsight_registers_the_agent_table_and_topics_on_an_app():
    app = faust.App("fleet-ops", broker="kafka://127.0.0.1:9093", store="memory://")
    chainsight = add_chainsight(app, StreamsConfig(topic_prefix="acme", partitions=6))
    received = []

    @app.agent(chainsight.alerts)  # an agent of the app's own on ChainSight's alerts
    async def page_on_call(alerts):
        async for alert in alerts:
            received.append(alert)

    assert chainsight.events.get_topic_name() == "acme.events"
    assert chainsight.alerts.get_topic_name() == "acme.alerts"
    assert chainsight.dead_letters.get_topic_name() == "acme.dead-letter"
    assert {agent.channel.get_topic_name() for agent in app.agents.values()} == {
        "acme.events", "acme.alerts"}
    table = chainsight.snapshots
    assert app.tables[table.name] is table
    assert table.changelog_topic_name == "fleet-ops-acme.snapshots-changelog"
    assert table.partitions == 6
    assert (table.key_serializer, table.value_serializer) == ("raw", "raw")  # never pickled
    assert chainsight.runtime.parts == {}  # partitions come with assignments
    engine = chainsight.runtime.engine_factory()  # as `chainsight worker` makes them
    assert engine.live and engine.settings.eta_shards == 6
