"""The fakes against the vendor contracts in ../shared/contracts (skipped when that folder is absent).

Two checks per response: every key of the vendor's documented example is present (the fake answers
what a client reads), and every key the fake sends exists in the contract with the same JSON type
(the fake invents nothing). Empty objects in the contracts are free-form (metadata payloads, blocks).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from sandbox import jira
from sandbox.pagerduty import PagerDutyState
from sandbox.pagerduty import create_app as pagerduty_app
from sandbox.slack import SlackState
from sandbox.slack import create_app as slack_app

AUTH = {"Authorization": "Bearer xoxb-contract"}


def json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", list: "array", dict: "object"}[type(value)]


def shape_problems(
    ours: Any, *references: Any, path: str = "$", same_kind: Callable[[dict], list[dict]] | None = None
) -> list[str]:
    """Keys of ``ours`` missing from every reference, or typed differently (null matches anything).
    ``same_kind`` adds references for an object wherever they were captured (e.g. every user)."""
    problems = []
    if isinstance(ours, dict):
        refs = [r for r in references if isinstance(r, dict)] + (same_kind(ours) if same_kind else [])
        if refs and not any(refs):
            return []  # free-form object
        for key, value in ours.items():
            candidates = [r[key] for r in refs if key in r]
            if not candidates:
                problems.append(f"{path}.{key}: not in the contract")
                continue
            typed = [c for c in candidates if c is not None]
            if value is not None and typed and json_type(value) not in {json_type(c) for c in typed}:
                expected = sorted({json_type(c) for c in typed})
                problems.append(f"{path}.{key}: {json_type(value)}, contract has {expected}")
            elif typed:
                problems += shape_problems(value, *typed, path=f"{path}.{key}", same_kind=same_kind)
    elif isinstance(ours, list):
        items = [item for r in references if isinstance(r, list) for item in r]
        for value in ours if items else ():
            problems += shape_problems(value, *items, path=f"{path}[]", same_kind=same_kind)
    return problems


# --- Slack ------------------------------------------------------------------------------------------

SLACK_SAMPLES = {
    "auth.test": "auth.test.json",
    "chat.postMessage": "chat.postMessage.trimmed.json",
    "chat.update": "chat.update.trimmed.json",
    "conversations.history": "conversations.history.trimmed.json",
    "conversations.replies": "conversations.replies.trimmed.json",
    "conversations.info": "conversations.info.json",
    "conversations.join": "conversations.join.json",
    "conversations.list": "conversations.list.json",
}


@pytest.fixture
def slack_ops(contract):
    operations = contract("slack/examples/slack-web-hub-methods.examples.json")["operations"]
    return {op["path"].strip("/"): op for op in operations}


@pytest.fixture
async def slack_responses(serve):
    """One success response per method, from a channel with a thread, metadata and blocks."""
    state = SlackState({"C0INCIDENT": "incidents", "C0GENERAL": "general"}, rate_limits=False)
    client = await serve(slack_app(state))

    async def call(method, **args):
        return await (await client.post(f"/api/{method}", json=args, headers=AUTH)).json()

    meta = {"event_type": "incident", "event_payload": {"issue": "OPS-1"}}
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*OPS-1*"}}]
    out = {"auth.test": await call("auth.test")}
    channel = "C0INCIDENT"
    parent = await call("chat.postMessage", channel=channel, text="OPS-1", blocks=blocks, metadata=meta)
    out["chat.postMessage"] = parent
    await call("chat.postMessage", channel=channel, text="reply", thread_ts=parent["ts"])
    await call("chat.postMessage", channel=channel, text="newer")
    out["chat.update"] = await call("chat.update", channel=channel, ts=parent["ts"], text="resolved", metadata=meta)
    out["conversations.history"] = await call(
        "conversations.history", channel=channel, limit=1, include_all_metadata=True
    )
    out["conversations.history (thread parent)"] = await call(
        "conversations.history", channel=channel, latest=parent["ts"], inclusive=True, include_all_metadata=True
    )
    out["conversations.replies"] = await call("conversations.replies", channel=channel, ts=parent["ts"], limit=1)
    out["conversations.info"] = await call("conversations.info", channel="C0INCIDENT")
    out["conversations.join"] = await call("conversations.join", channel="C0GENERAL")  # already a member: warning
    out["conversations.list"] = await call("conversations.list", limit=1)
    assert all(r["ok"] for r in out.values()), out
    return out


@pytest.mark.parametrize("case", [
    "auth.test", "chat.postMessage", "chat.update", "conversations.history", "conversations.history (thread parent)",
    "conversations.replies", "conversations.info", "conversations.join", "conversations.list",
])
def test_slack_success_shapes(contract, slack_ops, slack_responses, case):
    method = case.split(" ")[0]
    ours = slack_responses[case]
    example = slack_ops[method]["responses"]["200"]["examples"]["application/json"]
    sample = contract(f"slack/samples/api/{SLACK_SAMPLES[method]}")
    if case == method:
        assert set(example) <= set(ours), f"missing {set(example) - set(ours)}"
    assert shape_problems(ours, example, sample) == []


@pytest.mark.parametrize(
    ("method", "args", "headers"),
    [
        ("chat.postMessage", {"channel": "C0INCIDENT"}, AUTH),
        ("chat.postMessage", {"channel": "C0INCIDENT", "text": "x" * 40_001}, AUTH),
        ("chat.postMessage", {"channel": "C0NOWHERE1", "text": "x"}, AUTH),
        ("chat.postMessage", {"channel": "C0INCIDENT", "text": "x"}, {}),
        ("chat.postMessage", {"channel": "C0INCIDENT", "text": "x"}, {"Authorization": "Bearer bad"}),
        ("chat.update", {"channel": "C0INCIDENT", "ts": "1.000001", "text": "x"}, AUTH),
        ("conversations.history", {"channel": "C0INCIDENT", "oldest": "x"}, AUTH),
        ("conversations.replies", {"channel": "C0INCIDENT", "ts": "1.000001"}, AUTH),
        ("conversations.info", {"channel": "C0NOWHERE1"}, AUTH),
    ],
)
async def test_slack_error_codes_are_documented(serve, slack_ops, contract, method, args, headers):
    client = await serve(slack_app(SlackState({"C0INCIDENT": "incidents"})))
    resp = await client.post(f"/api/{method}", json=args, headers=headers)
    body = await resp.json()
    assert resp.status == 200 and body["ok"] is False
    assert body["error"] in slack_ops[method]["responses"]["default"]["documented_error_codes"]
    assert shape_problems(body, slack_ops[method]["responses"]["default"]["examples"]["application/json"],
                          contract(f"slack/samples/api/{SLACK_SAMPLES[method]}")) == []


# --- PagerDuty --------------------------------------------------------------------------------------


@pytest.fixture
def pd_ops(contract):
    return {op["path"]: op for op in contract("pagerduty/examples/pagerduty-events-v2.examples.json")["operations"]}


async def test_pagerduty_accepts_the_spec_examples_and_answers_their_shape(serve, pd_ops, contract):
    state = PagerDutyState()
    client = await serve(pagerduty_app(state))
    enqueue = pd_ops["/enqueue"]
    resp = await client.post("/v2/enqueue", json=enqueue["request_examples"]["application/json"])
    body = await resp.json()
    example = enqueue["responses"]["202"]["examples"]["application/json"]
    assert resp.status == 202 and set(body) == set(example)
    assert shape_problems(body, example) == [] and body["dedup_key"] == "srv01/mysql"

    for name, event in pd_ops["/change/enqueue"]["request_examples"]["application/json"].items():
        resp = await client.post("/v2/change/enqueue", json=event)
        assert resp.status == 202, name
        assert shape_problems(await resp.json(), example) == []
    assert len(state.change_events) == 2


async def test_pagerduty_error_bodies_follow_the_error_schema(serve, contract):
    spec = contract("pagerduty/pagerduty-events-v2.openapiv3.json")
    schema = spec["components"]["responses"]["Error"]["content"]["application/json"]["schema"]
    client = await serve(pagerduty_app(PagerDutyState()))
    bodies = [await (await client.post("/v2/enqueue", json={"event_action": "trigger"})).json(),
              await (await client.post("/v2/enqueue", data=b"nope")).json()]
    await client.post("/_sandbox/config", json={"rate_limits": True})
    await client.post("/_sandbox/faults", json={"path": "/v2/enqueue", "status": 429})
    bodies.append(await (await client.post("/v2/enqueue", json={})).json())
    for body in bodies:
        assert set(schema["required"]) <= set(body)
        for key, value in body.items():
            expected = schema["properties"][key]["type"]
            assert json_type(value) == expected, (key, body)
            if expected == "array":
                assert all(isinstance(item, str) for item in value)


# --- Jira ---------------------------------------------------------------------------------------------


@pytest.fixture
def captures(contracts):
    return [json.loads(path.read_bytes()) for path in sorted((contracts / "jira" / "webhooks").glob("*.json"))]


def _objects(value: Any) -> Iterator[dict]:
    if isinstance(value, dict):
        yield value
        for child in value.values():
            yield from _objects(child)
    elif isinstance(value, list):
        for child in value:
            yield from _objects(child)


@pytest.fixture
def jira_kinds(captures):
    """Users and issues look the same in every event; compare ours with all captured ones."""
    captured = [o for c in captures for o in _objects(c)]
    users = [o for o in captured if "accountId" in o]
    issues = [o for o in captured if {"key", "fields"} <= set(o)]
    return lambda ours: users if "accountId" in ours else issues if {"key", "fields"} <= set(ours) else []


def _of(captures, event):
    return [c for c in captures if c["webhookEvent"] == event]


def _standard_fields(payloads):
    return set.intersection(*({k for k in p["issue"]["fields"] if not k.startswith("customfield_")} for p in payloads))


@pytest.mark.parametrize(
    ("event", "built"),
    [
        ("jira:issue_created", lambda: jira.issue_created(
            "10001", "OPS-1", "OPS", "Database down", labels=["sev1"], assignee=jira.jira_user("70121:a", "Sam"),
            security="Internal", description="text", fix_versions=["1.2"], components=["db"],
        )),
        ("jira:issue_updated", lambda: jira.issue_updated(
            "10001", "OPS-1", "OPS", "Database down",
            changes=[("resolution", None, "Done"), ("status", "In Progress", "Done")],
        )),
        ("jira:issue_deleted", lambda: jira.issue_deleted("10001", "OPS-1", "OPS", "Database down")),
    ],
)
def test_jira_issue_events_match_the_captures(captures, jira_kinds, event, built):
    payload, references = built(), _of(captures, event)
    assert references, f"no capture for {event}"
    assert any(set(payload) == set(ref) for ref in references), sorted(payload)
    assert _standard_fields(references) <= set(payload["issue"]["fields"])
    assert set(payload["issue"]) == {"id", "self", "key", "fields"}
    assert shape_problems(payload, *references, same_kind=jira_kinds) == []


@pytest.mark.parametrize("event", ["comment_created", "comment_updated", "comment_deleted"])
def test_jira_comment_events_match_the_captures(captures, jira_kinds, event):
    payload = getattr(jira, event)("10001", "OPS-1", "OPS", "Database down", 20001, "Failover started",
                                   assignee=jira.jira_user("70121:a", "Sam"))
    [reference] = _of(captures, event)
    assert set(payload) == set(reference)
    assert set(payload["comment"]) == set(reference["comment"])
    assert set(payload["issue"]["fields"]) == set(reference["issue"]["fields"])
    assert shape_problems(payload, reference, same_kind=jira_kinds) == []
