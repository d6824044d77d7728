"""hub/delivery/pipeline.py: a failed attempt is logged with what went wrong, not only its code."""

import logging

from connectors.errors import RetryableError
from hub.delivery.pipeline import DeliveryPipeline, Outcome
from hub.delivery.retry import RetryPolicy


class Row:
    def __init__(self):
        self.value = None

    def get(self):
        return self.value

    def put(self, value):
        self.value = value

    async def persist(self):
        return None


class FailsOnce:
    vendor = "zendesk"

    def __init__(self):
        self.calls = 0

    async def converge(self, action, state):
        self.calls += 1
        if self.calls == 1:
            raise RetryableError("zendesk update_ticket: ChunkedEncodingError", code="zendesk.unexpected")
        return Outcome("sent", detail="ok")


async def test_the_failed_attempt_names_the_error_then_the_retry_delivers(caplog):
    sent = []

    async def send(topic, key, value):
        sent.append((topic, key, value))

    async def no_sleep(_s):
        return None

    pipeline = DeliveryPipeline(FailsOnce(), topic="actions.zendesk", policy=RetryPolicy(), tier_topics=("retry.5s",),
                                send=send, sleep=no_sleep)
    with caplog.at_level(logging.WARNING, logger="switchboard.delivery"):
        outcome = await pipeline.handle({"action_id": "zendesk|7|v1", "key": "7", "version": 1}, Row())
    failed = [r for r in caplog.records if r.getMessage() == "zendesk.delivery.failed"]
    assert outcome == "sent"
    assert len(failed) == 1 and failed[0].error == "zendesk update_ticket: ChunkedEncodingError"
    assert (failed[0].error_code, failed[0].decision) == ("zendesk.unexpected", "wait")
