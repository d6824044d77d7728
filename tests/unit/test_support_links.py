"""The support linking logic, run through an in-memory bus that routes messages by topic and key
exactly as the agents do (the Kafka-backed run is in tests/integration)."""

from collections import deque

import pytest

from hub.processors import support as sp

CFG = sp.SupportConfig(project_keys=("OPS", "SUP", "LEGAL"), links_field_id="f_links", status_field_id="f_status",
                       restricted_projects=("LEGAL",))


class Bus:
    def __init__(self):
        self.tickets, self.keys, self.issues = {}, {}, {}
        self.jira_actions, self.zendesk_actions = {}, {}
        self.t = 1000
        self.n = 0  # every event its own id, as the vendors give (two may share a millisecond)

    def run(self, topic, key, value):
        q = deque([(topic, key, value)])
        while q:
            q.extend(self.step(*q.popleft()))

    def step(self, topic, key, value):
        """One record through the side that owns its topic; returns what that side sends."""
        if topic == "events.support":
            st, out = sp.on_support_event(CFG, self.tickets.get(key), value); self.tickets[key] = st
        elif topic == "links.by_ticket":
            st, out = sp.on_issue_fact(CFG, self.tickets.get(key), value); self.tickets[key] = st
        elif topic == "links.by_key":
            st, out = sp.on_key_message(self.keys.get(key), value); self.keys[key] = st
        elif topic == "events.tracker":
            st, out = sp.on_tracker_event(CFG, self.issues.get(key), value); self.issues[key] = st
        elif topic == "links.by_issue":
            st, out = sp.on_link_message(CFG, self.issues.get(key), value); self.issues[key] = st
        elif topic == "actions.jira":
            assert value["version"] > self.jira_actions.get(key, {}).get("version", 0)
            self.jira_actions[key] = value; out = []
        elif topic == "actions.zendesk":
            assert value["version"] > self.zendesk_actions.get(key, {}).get("version", 0)
            self.zendesk_actions[key] = value; out = []
        else:
            raise AssertionError(topic)
        return out

    def tick(self):
        self.t += 10
        return self.t

    def ticket(self, tid, *, subject="Cannot log in", org=None, tags=(), field=None, comment=None, kind="ticket_updated",
               merged_into=None, via_hub=False, status="open"):
        t = self.tick()
        self.n += 1
        ev = {"schema": "switchboard.support_event/1", "event_id": f"z{tid}-{t}-{self.n}", "source": "zendesk", "kind": kind,
              "occurred_at_ms": t, "received_at_ms": t,
              "ticket": {"id": str(tid), "subject": subject, "status": status, "organization_id": None if org is None else str(org),
                         "organization_name": None if org is None else f"Org {org}", "requester_id": "9", "tags": list(tags),
                         "jira_key_field": field, "url": None, "updated_at_ms": t, "merged_into": merged_into, "partial": False},
              "comment": {"id": "c", "body": comment, "public": True, "author_id": "9"} if comment else None,
              "actor_id": "9", "via_hub": via_hub}
        self.run("events.support", str(tid), ev)

    def issue(self, iid, key, *, status="To Do", category="new", project=None, kind="issue_updated", refs=(), fix=(), summary="Login broken"):
        t = self.tick()
        ev = {"schema": "switchboard.tracker_event/1", "event_id": f"j{iid}-{t}", "source": "jira", "site": "https://x.atlassian.net",
              "kind": kind, "occurred_at_ms": t, "received_at_ms": t,
              "issue": {"id": str(iid), "key": key, "project_key": project or key.split("-")[0], "project_id": "1", "issue_type": "Bug",
                        "priority": "High", "status": status, "status_category": category, "summary": summary, "labels": [],
                        "assignee": None, "reporter": None, "resolution": None, "security_level": None, "fix_versions": list(fix),
                        "url": None, "partial": False, **({"ticket_refs": list(refs)} if refs else {})},
              "changes": [], "changelog_id": None, "comment": None, "actor": None}
        self.run("events.tracker", str(iid), ev)

    def link(self, tid, issue_key):
        self.run("links.by_key", issue_key, sp._msg("link", key=issue_key, ticket_id=str(tid), route="explicit", at_ms=self.tick()))

    def unlink(self, tid, issue_key):
        self.run("links.by_key", issue_key, sp._msg("unlink", key=issue_key, ticket_id=str(tid), route="explicit", at_ms=self.tick()))

    def linked(self, iid):
        return sorted(self.issues[str(iid)]["tickets"]) if str(iid) in self.issues else []


@pytest.fixture
def bus():
    b = Bus()
    b.issue(100, "OPS-1")
    return b


@pytest.mark.parametrize("how", ["field", "tag", "subject", "comment", "jira", "explicit"])
def test_each_route_links(bus, how):
    if how == "field":
        bus.ticket(1, field="ops-1")
    elif how == "tag":
        bus.ticket(1, tags=["vip", "jira_ops-1"])
    elif how == "subject":
        bus.ticket(1, subject="Login broken, see OPS-1")
    elif how == "comment":
        bus.ticket(1, comment="Engineering tracks this in OPS-1.")
    elif how == "jira":
        bus.ticket(1)
        bus.issue(100, "OPS-1", refs=["1"])
    else:
        bus.ticket(1)
        bus.link(1, "OPS-1")
    assert bus.linked(100) == ["1"]
    z = bus.zendesk_actions["1"]
    assert z["fields"]["f_links"] == "OPS-1" and "jira_linked" in z["tags_present"]
    j = bus.jira_actions["100"]
    assert list(j["links"]) == ["1"] and j["ticket_count"] == 1


def test_link_by_a_key_seen_before_its_issue_is_held_until_the_issue_is_known():
    b = Bus()
    b.ticket(1, field="SUP-9")
    assert b.linked(900) == []
    b.issue(900, "SUP-9")
    assert b.linked(900) == ["1"]
    assert b.zendesk_actions["1"]["fields"]["f_links"] == "SUP-9"


def test_fifty_tickets_ten_orgs_with_unlink_merge_and_move(bus):
    for i in range(50):
        bus.ticket(1000 + i, org=i % 10, field="OPS-1")
    j = bus.jira_actions["100"]
    assert (j["ticket_count"], j["organization_count"]) == (50, 10)
    # unlink: the field is cleared on two tickets of org 3 (1003, 1013) and an explicit unlink of another
    bus.ticket(1003, org=3, field="")
    bus.ticket(1013, org=3, field=None)
    bus.ticket(1023, org=3, field="OPS-1 ")  # still linked
    assert bus.jira_actions["100"]["ticket_count"] == 48
    # merge: 1033 (org 3) merged into 1043 (org 3): one ticket fewer, org still counted
    bus.ticket(1033, org=3, kind="ticket_merged", merged_into="1043", field="OPS-1")
    j = bus.jira_actions["100"]
    assert j["ticket_count"] == 47 and "1033" not in j["links"] and "1043" in j["links"]
    # merge into a ticket that was not linked: the link follows
    bus.ticket(2000, org=99)
    bus.ticket(1044, org=4, kind="ticket_merged", merged_into="2000", field="OPS-1")
    j = bus.jira_actions["100"]
    assert "2000" in j["links"] and "1044" not in j["links"] and j["ticket_count"] == 47 and j["organization_count"] == 11
    assert "OPS-1" in bus.zendesk_actions["2000"]["fields"]["f_links"]
    # move: OPS-1 becomes SUP-7 (same id): the tickets show the new key; the old key still links
    bus.issue(100, "SUP-7")
    assert bus.zendesk_actions["1000"]["fields"]["f_links"] == "SUP-7"
    bus.ticket(3000, org=5, subject="still see OPS-1")
    assert "3000" in bus.jira_actions["100"]["links"]
    orgs = {bus.tickets[t]["ticket"]["organization_id"] for t in bus.linked(100)}
    assert bus.jira_actions["100"]["organization_count"] == len(orgs)
    assert bus.jira_actions["100"]["ticket_count"] == len(bus.linked(100))


def test_resolve_puts_one_note_and_the_tag_on_every_linked_ticket(bus):
    for i in range(3):
        bus.ticket(10 + i, field="OPS-1")
    bus.issue(100, "OPS-1", status="In Progress", category="indeterminate")
    bus.issue(100, "OPS-1", status="Done", category="done", fix=["2.4"])
    for tid in ("10", "11", "12"):
        z = bus.zendesk_actions[tid]
        assert "jira_resolved" in z["tags_present"]
        assert [n["text"].splitlines()[0] for n in z["notes"]] == ["OPS-1 is now In Progress.", "OPS-1 is resolved (Done, fix version 2.4)."]
    bus.issue(100, "OPS-1", status="To Do", category="new")
    z = bus.zendesk_actions["10"]
    assert "jira_resolved" in z["tags_absent"] and z["notes"][-1]["text"].startswith("OPS-1 was reopened")


def test_hub_own_writes_do_not_echo(bus):
    bus.ticket(1, field="OPS-1")
    before = {k: v["version"] for k, v in bus.zendesk_actions.items()}, {k: v["version"] for k, v in bus.jira_actions.items()}
    # the hub's own update comes back as a webhook: same facts, via_hub
    bus.ticket(1, field="OPS-1", via_hub=True, tags=["jira_linked"])
    after = {k: v["version"] for k, v in bus.zendesk_actions.items()}, {k: v["version"] for k, v in bus.jira_actions.items()}
    assert before == after


def test_restricted_issue_gives_key_and_status_only(bus):
    bus.issue(200, "LEGAL-3", summary="Secret settlement")
    bus.ticket(5, field="LEGAL-3")
    facts = bus.tickets["5"]["issues"]["200"]["issue"]
    assert "summary" not in facts and facts["restricted"] and facts["key"] == "LEGAL-3"
    assert "Secret" not in repr(bus.zendesk_actions["5"])


def test_duplicates_and_replays_change_nothing(bus):
    bus.ticket(1, field="OPS-1")
    bus.ticket(2)  # never linked: nothing is written on it
    assert "2" not in bus.zendesk_actions
    before = repr((bus.jira_actions, bus.zendesk_actions))
    # the same ticket event again, and an older one arriving late: no new version anywhere
    bus.t -= 10
    bus.ticket(1, field="OPS-1")
    bus.t -= 100
    bus.ticket(1, field="")
    bus.link(1, "OPS-1")  # an explicit link on top of the field's: same link
    assert repr((bus.jira_actions, bus.zendesk_actions)) == before



class RecordingBus(Bus):
    """A bus that keeps every record written to the link topics and the event topics, in order, as
    Kafka does, so that a test can replay them all from offset 0 onto the sides' last states."""

    def __init__(self):
        super().__init__()
        self.records: list[tuple[str, str, dict]] = []
        self.replayed_actions: list[tuple[str, str]] | None = None

    def step(self, topic, key, value):
        if topic.startswith("actions.") and self.replayed_actions is not None:
            self.replayed_actions.append((topic, key))  # a write a replay would make
            return []
        if not topic.startswith("actions.") and self.replayed_actions is None:
            self.records.append((topic, key, value))
        return super().step(topic, key, value)

    def replay(self, order):
        """Every recorded record again, onto the current states (a restart with the tables restored
        and the consumer group reset to offset 0); returns the actions the replay would write."""
        self.replayed_actions = []
        for topic, key, value in order(list(self.records)):
            self.run(topic, key, value)
        return self.replayed_actions


def _topic_at_a_time(*first):
    def order(records):
        return sorted(records, key=lambda r: (r[0] not in first, first.index(r[0]) if r[0] in first else 0))
    return order


@pytest.mark.parametrize("order", [
    lambda records: records,  # as written
    _topic_at_a_time("links.by_issue", "links.by_ticket"),  # the link topics re-read before anything
    _topic_at_a_time("links.by_ticket", "links.by_issue", "links.by_key"),
    _topic_at_a_time("events.support", "events.tracker", "links.by_key", "links.by_issue", "links.by_ticket"),
], ids=["as-written", "issue-side-first", "ticket-side-first", "events-first"])
def test_a_replay_from_offset_zero_writes_nothing(order):
    """Replaying every topic onto the sides' last states must not roll any view back, even for a
    moment: older ticket facts, an older link of a route since unlinked, an issue's older word to a
    ticket, and the older of two ticket changes in the same millisecond all change nothing."""
    b = RecordingBus()
    b.issue(100, "OPS-1")
    b.issue(200, "SUP-2")
    b.ticket(1, field="OPS-1", org=1, status="new")
    b.ticket(1, field="OPS-1", org=2, status="open")  # newer facts for the same link
    b.ticket(2, tags=["jira_ops-1"], org=3)
    b.ticket(2, tags=[], org=3)  # the tag's link taken back
    b.ticket(3, subject="see SUP-2", org=4)
    b.link(3, "OPS-1")
    b.unlink(3, "OPS-1")  # an explicit link, then its unlink
    b.ticket(4, field="SUP-2", org=5)
    b.ticket(5, org=5)
    b.ticket(4, field="SUP-2", org=5, kind="ticket_merged", merged_into="5")
    b.t += 10
    b.ticket(6, field="SUP-2", org=6, status="new")
    b.t -= 10  # created and answered in the same millisecond
    b.ticket(6, field="SUP-2", org=6, status="open")
    b.issue(100, "OPS-1", status="In Progress", category="indeterminate")
    b.issue(100, "OPS-1", status="Done", category="done", fix=["1.2"])
    b.ticket(1, field="OPS-1", org=2, status="solved")
    shown = {k: dict(v) for k, v in b.jira_actions.items()}, {k: dict(v) for k, v in b.zendesk_actions.items()}
    assert b.linked(100) == ["1"] and b.linked(200) == ["3", "5", "6"]
    assert b.tickets["6"]["ticket"]["status"] == "open"

    assert b.replay(order) == []
    assert (b.jira_actions, b.zendesk_actions) == shown
    assert b.linked(100) == ["1"] and b.linked(200) == ["3", "5", "6"]
    assert b.tickets["6"]["ticket"]["status"] == "open" and b.tickets["1"]["ticket"]["status"] == "solved"


def test_a_link_made_again_takes_the_facts_it_carries():
    """A ticket's newer facts (direct) can reach the issue before an unlink and a new link of the
    same ticket (by key): the link made again must not stay without facts."""
    b = Bus()
    b.issue(100, "OPS-1")
    b.ticket(1, field="OPS-1", org=1, subject="Cannot export")
    st = b.issues["100"]
    seq = b.tickets["1"]["seq"]
    facts = dict(st["tickets"]["1"]["ticket"], status="pending")
    st, _ = sp.on_link_message(CFG, st, sp._msg("ticket_update", issue_id="100", ticket_id="1", ticket=facts, seq=seq + 3))
    st, _ = sp.on_link_message(CFG, st, sp._msg("unlink", issue_id="100", ticket_id="1", route="field", seq=seq + 1))
    assert "1" not in st["tickets"]
    st, out = sp.on_link_message(CFG, st, sp._msg("link", issue_id="100", ticket_id="1", route="tag", seq=seq + 2,
                                                  ticket=dict(facts, status="open")))
    assert st["tickets"]["1"]["ticket"]["subject"] == "Cannot export"  # not "(subject unknown)"
    jira = [v for topic, _, v in out if topic == "actions.jira"][-1]
    assert jira["links"]["1"]["title"].startswith("Zendesk #1: Cannot export") and jira["organization_count"] == 1


def test_words_after_a_crash_count_as_newer_than_those_sent_before_it():
    """A worker killed after sending a word but before storing its state re-runs from the older
    state, maybe taking another input first: its next word to the same ticket must not be ignored
    as old (the ticket would keep a link the issue has dropped)."""
    import time

    b = Bus()
    b.issue(100, "OPS-1")
    b.ticket(1, field="OPS-1")
    stored = b.issues["100"]  # the issue side's state as stored before the crash
    # before the kill: a status change; its word reaches the ticket, its state is never stored
    moved = {"schema": "switchboard.tracker_event/1", "event_id": "j-move", "source": "jira", "kind": "issue_updated",
             "occurred_at_ms": b.tick(), "received_at_ms": 0, "issue": {**stored["issue"], "status": "In Progress",
             "status_category": "indeterminate", "project_key": "OPS", "partial": False}, "changes": []}
    _, out = sp.on_tracker_event(CFG, stored, moved)
    for topic, key, value in out:
        if topic == "links.by_ticket":
            b.tickets[key], _ = sp.on_issue_fact(CFG, b.tickets[key], value)
    time.sleep(0.002)  # a restart takes seconds
    # after the restart the other input topic comes first: the ticket's field link is taken back
    _, out = sp.on_link_message(CFG, stored, sp._msg("unlink", issue_id="100", ticket_id="1", route="field",
                                                      seq=b.tickets["1"]["seq"] + 1))
    unlinked = [(k, v) for topic, k, v in out if topic == "links.by_ticket"]
    assert [v["op"] for _, v in unlinked] == ["unlinked"]
    b.tickets["1"], _ = sp.on_issue_fact(CFG, b.tickets["1"], unlinked[0][1])
    assert b.tickets["1"]["issues"] == {}
