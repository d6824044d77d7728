"""Topics are created from their declarations, idempotently; a disagreeing topic stops start-up."""

import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from hub.kafka_admin import TopicMismatchError, ensure_topics
from topics import load_topics

pytestmark = pytest.mark.integration


async def test_creates_every_declared_topic_then_is_idempotent(kafka_bootstrap):
    prefix = f"tt{uuid.uuid4().hex[:6]}."
    first = await ensure_topics(kafka_bootstrap, prefix, default_partitions=3)
    assert first == {s.full_name(prefix): s.partition_count(3) for s in load_topics()}
    assert 3 in first.values()
    assert await ensure_topics(kafka_bootstrap, prefix, default_partitions=3) == first


async def test_partition_mismatch_is_refused_with_a_clear_message(kafka_bootstrap):
    prefix = f"tm{uuid.uuid4().hex[:6]}."
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(f"{prefix}events.tracker", num_partitions=1, replication_factor=1)])
    finally:
        await admin.close()
    with pytest.raises(TopicMismatchError, match=rf"{prefix}events\.tracker has 1 partitions, the declaration wants 3.*kafka\.partitions"):
        await ensure_topics(kafka_bootstrap, prefix, default_partitions=3)
