"""A worker that takes over a partition (or restarts) re-reads snapshots whose effects may already
be in Slack; it must never put older content back on a message. Found by the chaos suite's
two-worker scenario (tests/chaos/test_broker_and_scale_out.py): updates going backwards after the
takeover, because the ledger row of the update was not yet durable when its worker died."""

from __future__ import annotations

import copy

from connectors.slack.actions import SlackConverger


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    async def channel_id(self, channel: str) -> str:
        return "C1"

    async def post_message(self, channel_id, text, **kw):
        self.calls.append(("post", text))
        return {"ts": "1.000001", "channel": channel_id}

    async def update_message(self, channel_id, ts, text, **kw):
        self.calls.append(("update", text))
        return {"ts": ts}

    async def find_by_metadata(self, *a, **kw):
        return None


class Ledger:
    """A KeyState whose ``durable`` copy is what a worker taking over would restore."""

    def __init__(self) -> None:
        self.value = None
        self.durable = None

    def get(self):
        return self.value

    def put(self, value):
        self.value = copy.deepcopy(value)

    async def persist(self):
        self.durable = copy.deepcopy(self.value)

    def taken_over(self) -> "Ledger":
        other = Ledger()
        other.value = copy.deepcopy(self.durable)
        return other


def action(version: int) -> dict:
    return {"key": "#incidents|x", "channel": "#incidents", "version": version,
            "message": {"text": f"v{version}"}, "thread": []}


async def test_an_older_snapshot_reread_after_a_takeover_is_not_sent():
    slack = FakeSlack()
    conv = SlackConverger(slack)  # type: ignore[arg-type]
    ledger = Ledger()
    await conv.converge(action(1), ledger)
    await conv.converge(action(2), ledger)
    assert slack.calls == [("post", "v1"), ("update", "v2")]
    # the worker dies before its last ledger write reached Kafka; another one re-reads v2's
    # predecessor (uncommitted) and then v2
    survivor = ledger.taken_over()
    outcome = await conv.converge(action(1), survivor)
    assert outcome.outcome == "skipped"
    await conv.converge(action(2), survivor)
    assert slack.calls == [("post", "v1"), ("update", "v2"), ("update", "v2")]  # v2 again (idempotent), never v1
