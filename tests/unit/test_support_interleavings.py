"""The support sides under every order Kafka may deliver their records in, and under a replay.

A bench-like day (issues filed, customers naming them by field, tag or subject, stray tickets tagged
later, replies, issues to In Progress and Done) is played onto the three sides' pure functions
through per-partition queues: each partition keeps its order, and which partition's record is
handled next (and when the next input arrives) is drawn at random, as a worker's agents and a lagging
consumer may make it. Zendesk's times are whole seconds, as its webhooks give them. Then:

- each ticket's newest Zendesk snapshot owes one internal note per transition of its issue;
- a replay of every topic from offset 0, interleaved at random onto the sides' last states, changes
  nothing anyone sees (make chaos found the support sides rolling a view back on a replay).
"""

from __future__ import annotations

import random
import zlib
from collections import defaultdict, deque

import pytest

from hub.processors import order
from hub.processors import support as sp

CFG = sp.SupportConfig(project_keys=("OPS", "SUP"), links_field_id="f_links", status_field_id="f_status")
PARTITIONS = 4
SEEN = {"actions.zendesk": ("fields", "tags_present", "notes"), "actions.jira": ("links", "ticket_count", "organization_count")}


class Clock:
    """The sides' clock (``time.time``), moved by the simulation: inputs arrive and records are handled."""

    def __init__(self, start_ms: float) -> None:
        self.ms = start_ms

    def time(self) -> float:
        return self.ms / 1000


class Day:
    def __init__(self, seed: int, monkeypatch, issues: int = 8) -> None:
        self.rng = rng = random.Random(seed)
        self.clock = Clock(1_796_000_000_000 + rng.randrange(1000))
        monkeypatch.setattr(sp, "time", self.clock)
        monkeypatch.setattr(order, "time", self.clock)
        self.queues: dict[tuple[str, int], deque] = defaultdict(deque)
        self.read: dict[tuple[str, int], list] = defaultdict(list)  # what each partition held, for the replay
        self.states: dict[str, dict] = {"tickets": {}, "keys": {}, "issues": {}}
        self.actions: dict[str, list] = {"actions.zendesk": [], "actions.jira": []}
        self.n = 0
        self.keys = {str(10000 + i): f"SUP-{i + 1}" for i in range(issues)}
        self.ticket_state: dict[str, dict] = {}
        self.linked: dict[str, str] = {}  # ticket -> the issue it names
        self.in_progress: set[str] = set()
        self.done: set[str] = set()
        self.inputs: deque = deque()
        self._plan()

    # --- the day's inputs, in the order people make them ----------------------------------------------

    def _issue(self, iid: str, status: str, category: str) -> None:
        self.n += 1
        eid, key = f"j{self.n}", self.keys[iid]
        self.inputs.append(("events.tracker", iid, lambda at: {
            "event_id": eid, "kind": "issue_updated", "occurred_at_ms": at,
            "issue": {"id": iid, "key": key, "project_key": "SUP", "summary": "Export fails", "status": status,
                      "status_category": category, "fix_versions": [], "security_level": None, "resolution": None,
                      "partial": False}}))

    def _ticket(self, tid: str, **change) -> None:
        self.n += 1
        eid, t = f"z{self.n}", {**self.ticket_state[tid], **change}
        self.ticket_state[tid] = t
        self.inputs.append(("events.support", tid, lambda at: {
            "event_id": eid, "kind": "ticket_updated", "occurred_at_ms": at // 1000 * 1000, "via_hub": False, "comment": None,
            "ticket": {"id": tid, "subject": t["subject"], "status": t["status"], "organization_id": "1", "organization_name": "Org",
                       "requester_id": "9", "tags": list(t["tags"]), "jira_key_field": t["field"], "url": None, "merged_into": None,
                       "partial": False}}))

    def _plan(self) -> None:
        rng, n_ticket, strays = self.rng, 100, []
        for iid in self.keys:
            self._issue(iid, "To Do", "new")
        for iid, key in self.keys.items():
            for _ in range(rng.choice((0, 1, 2, 3))):
                n_ticket += 1
                tid, route = str(n_ticket), rng.choice(("field", "field", "tag", "subject"))
                self.ticket_state[tid] = {"subject": f"Broken again, see {key}" if route == "subject" else "It does not work",
                                          "status": "new", "tags": [f"jira_{key.lower()}"] if route == "tag" else [],
                                          "field": key if route == "field" else None}
                self._ticket(tid)
                self.linked[tid] = iid
            if rng.random() < 0.3:
                n_ticket += 1
                self.ticket_state[str(n_ticket)] = {"subject": "Invoice question", "status": "new", "tags": [], "field": None}
                self._ticket(str(n_ticket))
                strays.append(str(n_ticket))
        for iid in self.keys:
            if rng.random() < 0.3:
                self._issue(iid, "To Do", "new")  # an edit
        for tid in list(self.linked):
            roll = rng.random()
            if roll < 0.4:
                self._ticket(tid)  # a reply
            elif roll < 0.55:
                self._ticket(tid, status=rng.choice(("open", "pending")))
        for tid in strays:  # an agent recognises an issue and tags the ticket
            if rng.random() < 0.5:
                iid = rng.choice(list(self.keys))
                self._ticket(tid, tags=[f"jira_{self.keys[iid].lower()}"])
                self.linked[tid] = iid
        for iid in self.keys:
            if rng.random() < 0.7:
                self._issue(iid, "In Progress", "indeterminate")
                self.in_progress.add(iid)
        for iid in sorted(self.in_progress):
            if rng.random() < 0.6:
                self._issue(iid, "Done", "done")
                self.done.add(iid)

    # --- the sides --------------------------------------------------------------------------------

    def _handle(self, q: tuple[str, int], *, replay: bool) -> None:
        topic = q[0]
        key, value = self.queues[q].popleft()
        if not replay:
            self.read[q].append((key, value))
        table, fn = {"events.support": ("tickets", lambda s, v: sp.on_support_event(CFG, s, v)),
                     "links.by_ticket": ("tickets", lambda s, v: sp.on_issue_fact(CFG, s, v)),
                     "links.by_key": ("keys", sp.on_key_message),
                     "events.tracker": ("issues", lambda s, v: sp.on_tracker_event(CFG, s, v)),
                     "links.by_issue": ("issues", lambda s, v: sp.on_link_message(CFG, s, v))}[topic]
        state, out = fn(self.states[table].get(key), value)
        if state is not None:
            self.states[table][key] = state
        for t, k, v in out:
            if t in self.actions:
                self.actions[t].append((k, v))
            else:
                self.queues[(t, zlib.crc32(k.encode()) % PARTITIONS)].append((k, v))

    def run(self) -> None:
        while self.inputs or any(self.queues.values()):
            waiting = [q for q, records in self.queues.items() if records]
            if self.inputs and (not waiting or self.rng.random() < 0.3):
                self.clock.ms += self.rng.randrange(1, 40)
                topic, key, make = self.inputs.popleft()
                self.queues[(topic, zlib.crc32(key.encode()) % PARTITIONS)].append((key, make(int(self.clock.ms))))
            else:
                self.clock.ms += self.rng.random() * 3
                self._handle(self.rng.choice(waiting), replay=False)

    def replay(self) -> list[str]:
        """Every topic re-read from offset 0 onto the last states; what it changed that people see."""
        shown = {t: {k: v for k, v in records} for t, records in self.actions.items()}
        made = {t: len(records) for t, records in self.actions.items()}
        for q, records in list(self.read.items()):
            self.queues[q].extend(records)
        while any(self.queues.values()):
            self.clock.ms += self.rng.random() * 3
            self._handle(self.rng.choice([q for q, records in self.queues.items() if records]), replay=True)
        changed = []
        for t, records in self.actions.items():
            for k, v in records[made[t]:]:
                moved = [f for f in SEEN[t] if v.get(f) != shown[t][k].get(f)]
                if moved:
                    changed.append(f"{t} {k}: {moved}")
                shown[t][k] = v
        return changed

    def newest(self, ticket_id: str) -> dict:
        return next((v for k, v in reversed(self.actions["actions.zendesk"]) if k == ticket_id), {})


@pytest.mark.parametrize("seed", range(40))
def test_every_ticket_is_owed_one_note_per_transition_of_its_issue(seed, monkeypatch):
    day = Day(seed, monkeypatch)
    day.run()
    for tid, iid in day.linked.items():
        newest = day.newest(tid)
        assert newest.get("fields", {}).get("f_links") == day.keys[iid], f"ticket {tid}"
        assert len(newest.get("notes") or []) == (iid in day.in_progress) + (iid in day.done), f"ticket {tid}: {newest.get('notes')}"


@pytest.mark.parametrize("seed", range(40))
def test_a_replay_from_offset_zero_changes_nothing_people_see(seed, monkeypatch):
    day = Day(seed, monkeypatch)
    day.run()
    assert day.replay() == []
