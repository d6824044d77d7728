"""hub/bench.py wait_delivered: reads each recorded call once and finds every key, in any order."""

import asyncio
import types

import orjson

from hub.bench import wait_delivered
from sandbox.common import RecordedCall


def _call(seq: int, path: str, body, status: int, at: float) -> RecordedCall:
    return RecordedCall(seq=seq, method="POST", path=path, query={}, body=body, headers={}, time=at, status=status)


def _post(seq: int, key: str, at: float, *, reply: bool = False, status: int = 200) -> RecordedCall:
    payload = {"message_key": f"C1|{key}", **({"reply_id": "r1"} if reply else {})}
    body = {"channel": "C1", "metadata": orjson.dumps({"event_type": "x", "event_payload": payload}).decode()}
    if reply:
        body["thread_ts"] = "1.0"
    return _call(seq, "/api/chat.postMessage", body, status, at)


def _trigger(seq: int, key: str, at: float, *, status: int = 202) -> RecordedCall:
    return _call(seq, "/v2/enqueue", {"event_action": "trigger", "dedup_key": key}, status, at)


def test_finds_keys_arriving_while_it_waits_and_keeps_first_times():
    states = {"pagerduty": types.SimpleNamespace(calls=[]), "slack": types.SimpleNamespace(calls=[])}
    pd, slack = states["pagerduty"].calls, states["slack"].calls
    pd.append(_trigger(1, "a", 1.0))
    slack.append(_post(1, "a", 1.5))

    async def later():
        await asyncio.sleep(0.15)
        pd.extend([_trigger(2, "b", 2.0, status=429), _trigger(3, "b", 3.0), _trigger(4, "a", 9.0)])
        slack.extend([_post(2, "b", 2.5, reply=True), _post(3, "b", 3.5), _post(4, "zzz", 4.0)])

    async def main():
        feeder = asyncio.create_task(later())
        got = await wait_delivered(states, {"a", "b"}, timeout=5)
        await feeder
        return got

    paged, posted = asyncio.run(main())
    # a refused trigger and a thread reply do not count; the first accepted one does
    assert paged == {"a": 1.0, "b": 3.0}
    assert posted == {"a": 1.5, "b": 3.5}


def test_gives_up_at_the_timeout_with_what_it_found():
    states = {"pagerduty": types.SimpleNamespace(calls=[_trigger(1, "a", 1.0)]), "slack": types.SimpleNamespace(calls=[])}
    paged, posted = asyncio.run(wait_delivered(states, {"a", "b"}, timeout=0.3))
    assert paged == {"a": 1.0} and posted == {}
