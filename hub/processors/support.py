"""Support: Zendesk tickets linked to Jira issues, many-to-many, by stable ids.

Three agents, each owning one side of the links, talk through keyed topics so that every table
update happens on the partition that owns the key (faust's rule, and what lets workers scale out):

``tickets``  (events.support + links.by_ticket, key ticket id)
    keeps each ticket's facts and the issues it is linked to; finds Jira keys in the ticket's field,
    tags, subject and comments and asks for links by key; forwards ticket facts to its issues; emits
    the ticket's desired Jira view (``actions.zendesk``: key/status fields, tags, internal notes).
``keys``     (links.by_key, key Jira key)
    knows which issue id each key belongs to (keys change when issues move; old keys keep working)
    and forwards link requests by key to the issue, holding them until the key is known.
``issues``   (links.by_issue + events.tracker, key issue id)
    is the authority on links: adds, removes and re-points (merges) them, counts tickets and
    organisations, tells each ticket what changed, and emits the issue's desired support view
    (``actions.jira``: one remote link per ticket, counts).

Everything emitted is a versioned desired state or an idempotent fact, so replays, restarts and
duplicates converge to the same result. Changes the hub made itself (``via_hub``) never start a
link, so nothing echoes.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from typing import Any

from hub.processors.order import fresh_event, newer_word, next_seq, note_applied

log = logging.getLogger("switchboard.support")

MAX_TRANSITIONS = 20
RESOLVED_TAG = "jira_resolved"
LINKED_TAG = "jira_linked"
#: Zendesk lower-cases tags; a tag "jira_ops-12" names the key OPS-12
TAG_KEY = re.compile(r"^jira[_-]([a-z][a-z0-9]{1,9}-[0-9]+)$")
#: a merge closes the source with this tag and a comment naming the target (Zendesk's default
#: wording; the only trace of the target in trigger-style webhooks and the incremental export)
MERGED_TAG = "closed_by_merge"
MERGE_COMMENT = re.compile(r"merged into request #([0-9]+)")


def merge_target(ticket: dict[str, Any], comment: dict[str, Any] | None) -> str | None:
    """The ticket this one was merged into, when the event says so or its traces show it."""
    if ticket.get("merged_into"):
        return str(ticket["merged_into"])
    if MERGED_TAG in (ticket.get("tags") or []) and comment:
        m = MERGE_COMMENT.search(comment.get("body") or "")
        if m:
            return m.group(1)
    return None


@dataclass(frozen=True)
class SupportConfig:
    """What the support processors need from the settings (passed in: the functions stay pure)."""

    zendesk_url: str = "https://example.zendesk.com"
    #: project keys whose keys count when found in free text; empty: any key-shaped word
    project_keys: tuple[str, ...] = ()
    #: Zendesk field ids the hub writes to (None: not written)
    links_field_id: str | None = None
    status_field_id: str | None = None
    #: which issue statuses deserve an internal note on the ticket
    note_status_categories: tuple[str, ...] = ("indeterminate", "done")
    restricted_projects: tuple[str, ...] = ()
    key_pattern: re.Pattern = field(default=re.compile(r"\b([A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,8})\b"))

    def text_keys(self, text: str | None) -> set[str]:
        if not text:
            return set()
        found = set(self.key_pattern.findall(text))
        if self.project_keys:
            found = {k for k in found if k.split("-", 1)[0] in self.project_keys}
        return found

    def ticket_url(self, ticket_id: str) -> str:
        return f"{self.zendesk_url.rstrip('/')}/agent/tickets/{ticket_id}"


def _msg(op: str, **kw: Any) -> dict[str, Any]:
    return {"schema": "switchboard.link_message/1", "op": op, "at_ms": kw.pop("at_ms", int(time.time() * 1000)), **kw}


def _digest(value: Any) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()


# ---------------------------------------------------------------- the ticket side (pure)

def new_ticket_state(ticket_id: str) -> dict[str, Any]:
    return {"ticket_id": ticket_id, "ticket": None, "keys": {}, "issues": {}, "merged_into": None,
            "version": 0, "digest": "", "last_occurred_ms": 0}


def ticket_keys(cfg: SupportConfig, ticket: dict[str, Any], comment: dict[str, Any] | None) -> dict[str, set[str]]:
    """Jira keys this ticket names, each with the routes that name it: ``field``, ``tag``, ``text``."""
    found: dict[str, set[str]] = {}
    for key in cfg.text_keys(ticket.get("subject")) | cfg.text_keys((comment or {}).get("body")):
        found.setdefault(key, set()).add("text")
    for tag in ticket.get("tags") or []:
        m = TAG_KEY.match(tag)
        if m:
            found.setdefault(m.group(1).upper(), set()).add("tag")
    for key in cfg.text_keys((ticket.get("jira_key_field") or "").upper()):
        found.setdefault(key, set()).add("field")
    return found


#: routes a ticket can take back (editing the field, removing the tag); text mentions stay
REVOCABLE = ("field", "tag")


def on_support_event(cfg: SupportConfig, state: dict[str, Any] | None, event: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, dict]]]:
    """A ticket changed. Returns the new ticket state and the messages to send ``(topic, key, value)``."""
    tid = str(event["ticket"]["id"])
    st = dict(state) if state else new_ticket_state(tid)
    st["keys"] = {k: dict(v) for k, v in st["keys"].items()}
    out: list[tuple[str, str, dict]] = []
    incoming = event["ticket"]
    occurred = int(event.get("occurred_at_ms") or 0)
    stale = not fresh_event(st, occurred, event["event_id"])
    old = st["ticket"] or {}
    if not stale:
        merged = dict(old)
        for k, v in incoming.items():
            if incoming.get("partial") and v in (None, [], ""):
                continue
            merged[k] = v
        merged["partial"] = False
        st["ticket"] = merged
        note_applied(st, occurred, event["event_id"])
    ticket = st["ticket"] or incoming
    cause = event["event_id"]

    into = merge_target(incoming, event.get("comment"))
    if event.get("kind") == "ticket_merged" or into:
        if into and st["merged_into"] != str(into):
            st["merged_into"] = str(into)
            for issue_id in list(st["issues"]):
                out.append(("links.by_issue", issue_id, _msg("merge", issue_id=issue_id, ticket_id=tid, into_ticket_id=str(into),
                                                             seq=next_seq(st), cause_event_id=cause, at_ms=occurred)))
        return st, out

    if not event.get("via_hub") and st["merged_into"] is None:
        wanted = ticket_keys(cfg, ticket, event.get("comment"))
        for key in sorted(set(st["keys"]) | set(wanted)):
            have = set(st["keys"].get(key, {}).get("routes", []))
            now = wanted.get(key, set())
            gone = {r for r in have if r in REVOCABLE and r not in now} if not stale else set()
            added = now - have
            for route in sorted(gone):
                out.append(("links.by_key", key, _msg("unlink", key=key, ticket_id=tid, route=route, seq=next_seq(st), cause_event_id=cause, at_ms=occurred)))
            for route in sorted(added):
                out.append(("links.by_key", key, _msg("link", key=key, ticket_id=tid, route=route, ticket=_ticket_facts(ticket),
                                                       seq=next_seq(st), cause_event_id=cause, at_ms=occurred)))
            routes = (have - gone) | added
            if routes:
                st["keys"][key] = {"routes": sorted(routes)}
            else:
                st["keys"].pop(key, None)
    # ticket facts (status, organisation, subject) for every issue it is linked to
    facts = _ticket_facts(ticket)
    for issue_id in st["issues"]:
        out.append(("links.by_issue", issue_id, _msg("ticket_update", issue_id=issue_id, ticket_id=tid, ticket=facts, seq=next_seq(st), cause_event_id=cause)))
    out.extend(_zendesk_action(cfg, st, cause))
    return st, out


def _ticket_facts(ticket: dict[str, Any]) -> dict[str, Any]:
    return {k: ticket.get(k) for k in ("id", "subject", "status", "organization_id", "organization_name", "url")}


def on_issue_fact(cfg: SupportConfig, state: dict[str, Any] | None, msg: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, dict]]]:
    """The issue side says: linked / unlinked / the issue changed."""
    tid = str(msg["ticket_id"])
    st = dict(state) if state else new_ticket_state(tid)
    st["issues"] = {k: dict(v) for k, v in st["issues"].items()}
    st["issue_seq"] = dict(st.get("issue_seq") or {})
    out: list[tuple[str, str, dict]] = []
    issue_id = str(msg["issue_id"])
    op = msg["op"]
    if not newer_word(st["issue_seq"], issue_id, msg.get("seq")):
        return st, out  # an older word of the issue (a replay re-reads it) changes nothing
    cause = msg.get("cause_event_id") or ""
    if op == "unlinked":
        st["issues"].pop(issue_id, None)
    else:
        entry = st["issues"].get(issue_id)
        issue = msg.get("issue") or {}
        if entry is None:
            if op != "linked":
                return st, out  # an update for a link this ticket no longer has
            entry = {"linked_at_ms": msg["at_ms"], "issue": {}, "seen_transitions": []}
            st["issues"][issue_id] = entry
            if st["ticket"]:  # tell the issue our facts (a merged-in ticket's issue does not know them)
                out.append(("links.by_issue", issue_id, _msg("ticket_update", issue_id=issue_id, ticket_id=tid, ticket=_ticket_facts(st["ticket"]),
                                                           seq=next_seq(st), cause_event_id=cause)))
        # facts older than those applied (a replay re-reads old records) never roll the ticket back
        if issue and msg["at_ms"] >= entry.get("facts_at_ms", 0):
            entry["issue"] = issue
            entry["facts_at_ms"] = msg["at_ms"]
    out.extend(_zendesk_action(cfg, st, cause))
    return st, out


def _zendesk_action(cfg: SupportConfig, st: dict[str, Any], cause: str) -> list[tuple[str, str, dict]]:
    """The ticket's desired Jira view; emitted only when it changed (a new version)."""
    tid = st["ticket_id"]
    if st["merged_into"] or (not st["issues"] and not st["version"]) or (st["ticket"] or {}).get("status") == "closed":
        return []  # merged away, never linked, or closed (Zendesk refuses edits to closed tickets)
    issues = sorted(st["issues"].items(), key=lambda kv: (kv[1]["issue"].get("key") or "", kv[0]))
    keys = [i["issue"].get("key") or f"#{iid}" for iid, i in issues]
    fields: dict[str, str | None] = {}
    if cfg.links_field_id:
        fields[cfg.links_field_id] = " ".join(keys) or None
    if cfg.status_field_id:
        fields[cfg.status_field_id] = ", ".join(f"{i['issue'].get('key')}: {i['issue'].get('status')}" for _, i in issues) or None
    resolved = bool(issues) and all(i["issue"].get("status_category") == "done" for _, i in issues)
    present = ([LINKED_TAG] if issues else []) + ([RESOLVED_TAG] if resolved else [])
    absent = [t for t in (LINKED_TAG, RESOLVED_TAG) if t not in present]
    notes = []
    for iid, i in issues:
        issue = i["issue"]
        for t in issue.get("transitions") or []:
            if t["at_ms"] >= i["linked_at_ms"] and t.get("category") in cfg.note_status_categories or (t["at_ms"] >= i["linked_at_ms"] and t.get("reopened")):
                notes.append({"id": f"{iid}:{t['id']}", "text": transition_note(issue, t)})
    desired = {"fields": fields, "tags_present": present, "tags_absent": absent, "notes": notes}
    digest = _digest(desired)
    if digest == st["digest"]:
        return []
    st["digest"] = digest
    st["version"] += 1
    return [("actions.zendesk", tid, {
        "schema": "switchboard.action.zendesk/1", "action_id": f"zendesk|{tid}|v{st['version']}", "key": tid,
        "ticket_id": tid, "version": st["version"], **desired, "cause": {"event_id": cause, "source": "support"},
        "attempt": 0, "created_at_ms": int(time.time() * 1000),
    })]


def transition_note(issue: dict[str, Any], t: dict[str, Any]) -> str:
    """An internal note an agent can relay: key and status only (never a restricted summary)."""
    key = issue.get("key") or "the linked Jira issue"
    if t.get("reopened"):
        text = f"{key} was reopened (status {t.get('to')})."
    elif t.get("category") == "done":
        fix = ", ".join(issue.get("fix_versions") or [])
        text = f"{key} is resolved ({t.get('to')}{', fix version ' + fix if fix else ''})."
    else:
        text = f"{key} is now {t.get('to')}."
    return f"{text}\n— Switchboard [ref {issue.get('id')}:{t['id']}]"


# ---------------------------------------------------------------- the key side (pure)

def on_key_message(state: dict[str, Any] | None, msg: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, dict]]]:
    st = dict(state) if state else {"issue_id": None, "pending": []}
    out: list[tuple[str, str, dict]] = []
    if msg["op"] == "issue_key":
        st["issue_id"] = str(msg["issue_id"])
        for pending in st["pending"]:
            out.append(("links.by_issue", st["issue_id"], {**pending, "issue_id": st["issue_id"]}))
        st["pending"] = []
    elif st["issue_id"]:
        out.append(("links.by_issue", st["issue_id"], {**msg, "issue_id": st["issue_id"]}))
    else:
        st["pending"] = (list(st["pending"]) + [msg])[-200:]  # the key's issue is not known yet
    return st, out


# ---------------------------------------------------------------- the issue side (pure)

def new_issue_state(issue_id: str) -> dict[str, Any]:
    return {"issue_id": issue_id, "issue": {"id": issue_id}, "tickets": {}, "version": 0, "digest": "", "last_occurred_ms": 0,
            "ticket_words": {}}


def on_tracker_event(cfg: SupportConfig, state: dict[str, Any] | None, event: dict[str, Any]) -> tuple[dict[str, Any] | None, list[tuple[str, str, dict]]]:
    """A Jira issue changed: remember it, announce its key, and tell its tickets."""
    iid = str(event["issue"]["id"])
    out: list[tuple[str, str, dict]] = []
    refs = [str(r) for r in event["issue"].get("ticket_refs") or []]
    st = _copy_issue_state(state) if state else new_issue_state(iid)
    old_key = st["issue"].get("key")
    changed = _apply_issue(cfg, st, event)
    key = st["issue"].get("key")
    if key and key != old_key:
        out.append(("links.by_key", key, _msg("issue_key", key=key, issue_id=iid)))
    for ref in refs:  # the issue names a ticket: a link from the Jira side
        t = st["tickets"].setdefault(ref, {"routes": [], "ticket": {"id": ref}})
        if "jira" not in t["routes"]:
            t["routes"] = sorted(set(t["routes"]) | {"jira"})
            out.append(("links.by_ticket", ref, _msg("linked", ticket_id=ref, issue_id=iid, issue=public_issue(cfg, st["issue"]), seq=next_seq(st),
                                                     cause_event_id=event["event_id"], at_ms=int(event.get("occurred_at_ms") or 0))))
            changed = True
    if changed:
        facts = public_issue(cfg, st["issue"])
        for tid in st["tickets"]:
            out.append(("links.by_ticket", tid, _msg("issue_update", ticket_id=tid, issue_id=iid, issue=facts, seq=next_seq(st), cause_event_id=event["event_id"])))
    out.extend(_jira_action(cfg, st, event["event_id"]))
    return st, out


def _copy_issue_state(state: dict[str, Any]) -> dict[str, Any]:
    st = dict(state)
    st["issue"] = dict(state["issue"])
    st["tickets"] = {k: {**v, "routes": list(v["routes"])} for k, v in state["tickets"].items()}
    st["ticket_words"] = dict(state.get("ticket_words") or {})
    return st


def _apply_issue(cfg: SupportConfig, st: dict[str, Any], event: dict[str, Any]) -> bool:
    occurred = int(event.get("occurred_at_ms") or 0)
    if not fresh_event(st, occurred, event["event_id"]):
        return False
    note_applied(st, occurred, event["event_id"])
    issue = st["issue"]
    before = {k: issue.get(k) for k in ("key", "status", "status_category", "fix_versions", "deleted")}
    incoming = event["issue"]
    partial = incoming.get("partial")
    for k in ("key", "project_key", "summary", "status", "status_category", "fix_versions", "security_level", "resolution"):
        v = incoming.get(k)
        if partial and v in (None, [], ""):
            continue
        issue[k] = v
    if event.get("kind") == "issue_deleted":
        issue["deleted"] = True
    transitions = list(issue.get("transitions") or [])
    prev_cat = before["status_category"]
    if issue.get("status") != before["status"] and before["status"] is not None and issue.get("status"):
        tid = f"{event['event_id']}"
        if not any(t["id"] == tid for t in transitions):
            transitions.append({"id": tid, "at_ms": occurred, "from": before["status"], "to": issue.get("status"),
                                "category": issue.get("status_category"), "reopened": prev_cat == "done" and issue.get("status_category") != "done"})
    issue["transitions"] = transitions[-MAX_TRANSITIONS:]
    after = {k: issue.get(k) for k in before}
    return after != before


def public_issue(cfg: SupportConfig, issue: dict[str, Any]) -> dict[str, Any]:
    """What a ticket may know of an issue: a restricted issue gives key and status only."""
    restricted = bool(issue.get("security_level")) or (issue.get("project_key") in cfg.restricted_projects) or not issue.get("project_key")
    facts = {k: issue.get(k) for k in ("id", "key", "status", "status_category", "fix_versions", "transitions", "deleted")}
    if not restricted:
        facts["summary"] = issue.get("summary")
    facts["restricted"] = restricted
    return facts


def on_link_message(cfg: SupportConfig, state: dict[str, Any] | None, msg: dict[str, Any]) -> tuple[dict[str, Any], list[tuple[str, str, dict]]]:
    """Link, unlink, ticket facts and merges for one issue."""
    if msg.get("domain") == "sales":
        return None, []  # the sales issue side's message (links.by_issue is shared)
    iid = str(msg["issue_id"])
    st = _copy_issue_state(state) if state else new_issue_state(iid)
    out: list[tuple[str, str, dict]] = []
    op = msg["op"]
    tid = str(msg.get("ticket_id") or "")
    cause = msg.get("cause_event_id") or ""
    seq = msg.get("seq")
    words = st["ticket_words"]
    if op == "link":
        route = msg.get("route") or "explicit"
        if _membership_word(words, tid, route, msg):
            t = st["tickets"].setdefault(tid, {"routes": [], "ticket": {"id": tid}})
            new_link = not t["routes"]
            t["routes"] = sorted(set(t["routes"]) | {route})
            if msg.get("ticket") and _newer_facts(t, seq):
                t["ticket"] = msg["ticket"]
            if new_link:
                out.append(("links.by_ticket", tid, _msg("linked", ticket_id=tid, issue_id=iid, issue=public_issue(cfg, st["issue"]), seq=next_seq(st),
                                                         cause_event_id=cause, at_ms=msg["at_ms"])))
    elif op == "unlink":
        t = st["tickets"].get(tid)
        route = msg.get("route") or "explicit"
        if t is not None and _membership_word(words, tid, route, msg):
            t["routes"] = [] if route == "explicit" else [r for r in t["routes"] if r != route]
            if not t["routes"]:
                del st["tickets"][tid]
                out.append(("links.by_ticket", tid, _msg("unlinked", ticket_id=tid, issue_id=iid, seq=next_seq(st), cause_event_id=cause)))
    elif op == "ticket_update":
        t = st["tickets"].get(tid)
        if t is not None and msg.get("ticket") and _newer_facts(t, seq):
            t["ticket"] = msg["ticket"]
    elif op == "merge":
        into = str(msg["into_ticket_id"])
        t = st["tickets"].get(tid)
        if t is not None and newer_word(words, f"{tid}|*", seq):
            del st["tickets"][tid]
            out.append(("links.by_ticket", tid, _msg("unlinked", ticket_id=tid, issue_id=iid, seq=next_seq(st), cause_event_id=cause)))
            target = st["tickets"].setdefault(into, {"routes": [], "ticket": {"id": into}})
            if not target["routes"]:
                out.append(("links.by_ticket", into, _msg("linked", ticket_id=into, issue_id=iid, issue=public_issue(cfg, st["issue"]),
                                                          seq=next_seq(st), cause_event_id=cause, at_ms=msg["at_ms"])))
            target["routes"] = sorted(set(target["routes"]) | {"merge"})
    out.extend(_jira_action(cfg, st, cause))
    return st, out


def _newer_facts(t: dict[str, Any], seq: Any) -> bool:
    """Whether a ticket's facts numbered ``seq`` are newer than those its link holds (and note it).
    Kept on the link, not beside it: a link made again starts without facts and takes any."""
    return newer_word(t, "facts_seq", seq)


def _membership_word(words: dict[str, int], tid: str, route: str, msg: dict[str, Any]) -> bool:
    """Whether a word on one of a ticket's routes to this issue is newer than the last one applied
    on that route (and, from the ticket side, than its merge). Each route is its own fact: a link
    by key and a direct update of the same ticket travel different paths, so only words about the
    same thing are compared. The ticket side numbers its words; an explicit link or unlink (a
    person, through the CLI or the API) is numbered by the millisecond it was asked in."""
    if route == "explicit":
        return newer_word(words, f"{tid}|explicit", msg.get("at_ms"))
    seq = msg.get("seq")
    if isinstance(seq, int) and seq <= words.get(f"{tid}|*", -1):
        return False
    return newer_word(words, f"{tid}|{route}", seq)


def issue_summary(st: dict[str, Any]) -> dict[str, Any]:
    """Counts for the API and the Jira fields: tickets and distinct organisations."""
    # counted by id when known (webhooks and the export agree on it), else by name; shown by name
    orgs: dict[str, str] = {}
    for t in st["tickets"].values():
        tk = t["ticket"]
        oid, name = tk.get("organization_id"), tk.get("organization_name")
        if oid or name:
            key = str(oid) if oid else f"name:{name}"
            orgs[key] = name or orgs.get(key) or f"organization {oid}"
    return {"ticket_count": len(st["tickets"]), "organization_count": len(orgs), "organizations": sorted(orgs.values())}


def _jira_action(cfg: SupportConfig, st: dict[str, Any], cause: str) -> list[tuple[str, str, dict]]:
    iid = st["issue_id"]
    if not st["tickets"] and not st["version"]:
        return []  # never linked: nothing to show in Jira
    links = {}
    for tid, t in sorted(st["tickets"].items()):
        tk = t["ticket"]
        org = tk.get("organization_name") or (f"org {tk['organization_id']}" if tk.get("organization_id") else "no organisation")
        title = f"Zendesk #{tid}: {tk.get('subject') or '(subject unknown)'} — {org}, {tk.get('status') or 'unknown'}"
        links[tid] = {"url": tk.get("url") or cfg.ticket_url(tid), "title": title[:255], "status": tk.get("status"),
                      "global_id": f"switchboard:zendesk:ticket:{tid}"}
    summary = issue_summary(st)
    desired = {"links": links, **summary}
    digest = _digest(desired)
    if digest == st["digest"]:
        return []
    st["digest"] = digest
    st["version"] += 1
    return [("actions.jira", iid, {
        "schema": "switchboard.action.jira/1", "action_id": f"jira|{iid}|v{st['version']}", "key": iid, "issue_id": iid,
        "issue_key": st["issue"].get("key"), "version": st["version"], **desired,
        "cause": {"event_id": cause, "source": "support"}, "attempt": 0, "created_at_ms": int(time.time() * 1000),
    })]


# ---------------------------------------------------------------- the agents

def support_config(hub) -> SupportConfig:
    s = hub.settings.support
    restricted = tuple(sorted(getattr(hub.routing, "restricted_projects", ()) or ()))
    return SupportConfig(zendesk_url=s.zendesk_url, project_keys=tuple(s.project_keys), links_field_id=s.zendesk_links_field_id,
                         status_field_id=s.zendesk_status_field_id, restricted_projects=restricted)


def register(hub) -> None:
    """The three sides as agents, each owning its table (see the module docstring)."""
    from functools import partial

    from hub.processors.common import json_table, register_side

    cfg = support_config(hub)
    stats = hub.pipelines.setdefault("support", {})
    register_side(hub, name="support-tickets", table=json_table(hub, "support-tickets"), stats=stats, steps={
        "events.support": (lambda v: str(v["ticket"]["id"]), partial(on_support_event, cfg)),
        "links.by_ticket": (lambda v: str(v["ticket_id"]), partial(on_issue_fact, cfg)),
    })
    register_side(hub, name="support-keys", table=json_table(hub, "support-keys"), stats=stats, steps={
        "links.by_key": (lambda v: str(v["key"]), on_key_message),
    })
    register_side(hub, name="support-issues", table=json_table(hub, "support-issues"), stats=stats, steps={
        "events.tracker": (lambda v: str(v["issue"]["id"]), partial(on_tracker_event, cfg)),
        "links.by_issue": (lambda v: str(v["issue_id"]), partial(on_link_message, cfg)),
    })
