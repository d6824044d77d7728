"""The audit counts what it claims to: a suite whose counters are always zero proves nothing unless
each counter is seen to move. Runs on the fakes' state directly (no broker, no HTTP)."""

from __future__ import annotations

from sandbox.common import RecordedCall
from sandbox.pagerduty import PagerDutyState
from sandbox.slack import SlackState, _SlackApi
from tests.chaos.harness import Workload, audit, early_calls

KEY = "canarypdroutingkey00000000000042"
CHANNELS = {"C0INCIDENTS": "incidents", "C0LEGAL": "legal-incidents", "C0GENERAL": "general"}


def _world(n_incidents: int = 10):
    slack = SlackState(channels=CHANNELS, rate_limits=False)
    pd = PagerDutyState(routing_keys=[KEY], rate_limits=False)
    work = Workload(n_incidents * 5, first_id=100, run="t")
    return slack, pd, work, _SlackApi(slack)


def _deliver_all(slack, pd, work, api):
    """What a correct hub leaves behind: one message per incident at rev 2, resolved, two replies."""
    for inc in work.incidents:
        cid = "C0LEGAL" if inc.restricted else "C0INCIDENTS"
        meta = {"event_type": "switchboard_incident", "event_payload": {"message_key": f"#x|{inc.dedup}"}}
        ts = api.chat_post_message({"channel": cid, "text": f"Triggered: {inc.key} {inc.summary(0)}", "metadata": meta})["ts"]
        for text in (f"Acknowledged: {inc.key} {inc.summary(1)}", f"Resolved: {inc.key} {inc.summary(2)}"):
            api.chat_update({"channel": cid, "ts": ts, "text": text})
            slack.calls.append(RecordedCall(len(slack.calls) + 1, "POST", "/api/chat.update", {}, {"channel": cid, "ts": ts, "text": text}, {}, 0.0, 200))
        for text in ("Status To Do → In Progress by A", "Status In Progress → Done by A"):
            api.chat_post_message({"channel": cid, "text": text, "thread_ts": ts})
        for action in ("trigger", "resolve"):
            pd.apply({"routing_key": KEY, "event_action": action, "dedup_key": inc.dedup,
                      "payload": {"summary": "s", "source": "x", "severity": "critical"}})
        work.accepted[inc.issue_id] = 5
    return api


def test_a_correct_delivery_counts_zero():
    slack, pd, work, api = _world()
    _deliver_all(slack, pd, work, api)
    assert audit(slack, pd, work).counts.as_dict() == dict(lost=0, duplicate_pages=0, duplicate_posts=0, order_violations=0, leaks=0)


def test_every_counter_moves():
    slack, pd, work, api = _world()
    _deliver_all(slack, pd, work, api)
    ops = [i for i in work.incidents if not i.restricted]
    legal = next(i for i in work.incidents if i.restricted)
    # a duplicate post and a second PagerDuty incident after the resolve
    meta = {"event_type": "switchboard_incident", "event_payload": {"message_key": f"#x|{ops[0].dedup}"}}
    api.chat_post_message({"channel": "C0INCIDENTS", "text": "Triggered: again", "metadata": meta})
    pd.apply({"routing_key": KEY, "event_action": "trigger", "dedup_key": ops[1].dedup,
              "payload": {"summary": "s", "source": "x", "severity": "critical"}})
    # an update going back to an older revision, and one before its message existed
    ts = next(m.ts for m in slack.history("C0INCIDENTS") if ops[2].key in m.text)
    body = {"channel": "C0INCIDENTS", "ts": ts, "text": f"Resolved: {ops[2].key} {ops[2].summary(1)}"}
    slack.calls.append(RecordedCall(len(slack.calls) + 1, "POST", "/api/chat.update", {}, body, {}, 1.0, 200))
    slack.calls.append(RecordedCall(len(slack.calls) + 1, "POST", "/api/chat.update", {}, {"channel": "C0INCIDENTS", "ts": "1.0"},
                                    {}, 1.0, 200, error="message_not_found"))
    # a restricted incident's text sent to a public channel
    slack.calls.append(RecordedCall(len(slack.calls) + 1, "POST", "/api/chat.postMessage", {},
                                    {"channel": "C0INCIDENTS", "text": legal.summary(0)}, {}, 1.0, 200))
    # an incident whose message is gone (its two replies are orphans now)
    gone = ops[3]
    msgs = slack.messages["C0INCIDENTS"]
    del msgs[next(ts for ts, m in msgs.items() if gone.key in m.text and not m.is_reply)]
    counts = audit(slack, pd, work).counts
    assert counts.duplicate_posts == 1 and counts.duplicate_pages == 1 and counts.leaks == 1
    assert counts.order_violations == 4  # the rev going back, the update before its message, 2 orphaned replies
    assert counts.lost == 6  # the 5 steps of the incident whose message is gone, and the re-paged one is open again


def test_early_calls_are_the_ones_inside_retry_after():
    calls = [RecordedCall(1, "POST", "/api/chat.postMessage", {}, {"channel": "C1"}, {}, 10.0, 429),
             RecordedCall(2, "POST", "/api/chat.postMessage", {}, {"channel": "C2"}, {}, 11.0, 200),
             RecordedCall(3, "POST", "/api/chat.postMessage", {}, {"channel": "C1"}, {}, 12.0, 200),
             RecordedCall(4, "POST", "/api/chat.postMessage", {}, {"channel": "C1"}, {}, 13.0, 200),
             RecordedCall(5, "POST", "/api/chat.postMessage", {}, {"channel": "C1"}, {}, 10.1, 200)]  # was in flight
    assert len(early_calls(calls, 3.0)) == 1
