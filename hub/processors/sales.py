"""Sales: Salesforce feature requests and opportunities linked to Jira issues; revenue at stake per issue.

A feature request (``switchboard.sales_event/1``, object ``feature_request``) links to a Jira issue
when its Jira-key field or its text (name, description) names the issue's key. An opportunity is
linked to an issue through its feature requests: many-to-many, by stable ids (the Jira issue id,
the Salesforce record ids). Three sides, each owning its key, talk through keyed topics so every
table update happens on the partition that owns the key (the same rule as :mod:`hub.processors.support`):

``feature requests``  (events.sales + sales.by_feature_request, key feature request id)
    keeps the request's fields, finds Jira keys (field, text) and asks for links by key on
    ``links.by_key`` (ops ``sales_link``/``sales_unlink``, ``domain: "sales"``; the support key side
    forwards them to ``links.by_issue`` unchanged), tells its opportunity which issues it links it
    to, and emits the request's desired write-back (``actions.salesforce``: Jira key, status, fix version).
``opportunities``     (events.sales + sales.by_opportunity, key opportunity id)
    keeps the opportunity's facts (amount, currency, stage, probability, closed/won, close date,
    account, owner, deleted) and the issues its requests link it to; sends its facts to each
    linked issue whenever they or the links change; when a linked issue is resolved while the
    opportunity is open, adds one Task for the opportunity's owner to its desired state
    (``actions.salesforce``, key opportunity id).
``issues``            (events.tracker + links.by_issue [domain sales only] + sales.by_issue, key issue id)
    is the authority on feature-request links, keeps the linked opportunities with their latest
    facts, the totals, and emits the issue's desired revenue view (``actions.jira``, key
    ``revenue:<issue id>``, schema ``switchboard.action.jira_revenue/1``) when its digest changes.

Totals count *open* opportunities only (not closed, not deleted): closed-lost, closed-won and
deleted ones leave them; reopened and undeleted ones come back, because totals are recomputed from
the facts each time, never adjusted incrementally. Amounts in different currencies are never added:
one total per currency, plus a converted total in the base currency when every currency present
has a configured rate.

Done-notification: one Task per (opportunity, issue, resolution). A resolution is the tracker
event that moved the issue into status category ``done``; its id is that event's id, so a replay
or a duplicate delivery names the same Task and the converger makes it once. Reopening and
resolving again is a new resolution and a new Task: sales wants it, because the first fix did not
hold — the owner may already have told the customer "shipped" and must learn that it shipped again
(with, usually, another fix version). Opportunities closed or deleted at resolution time get none,
and a link made after a resolution does not notify for it.

Loop safety: records the hub changed itself (``via_hub``) never start or end links. Once the hub
writes the key field, a later value equal to what it wrote is treated as the hub's mirror (the
field's links are kept as they were, not re-derived from it), so a key the hub copied from the text
does not become sticky.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from connectors.salesforce.settings import FeatureRequestFields
from hub.processors.order import MAX_SEEN, fresh_event, newer_word, next_seq, note_applied

log = logging.getLogger("switchboard.sales")

DOMAIN = "sales"
MAX_RESOLUTIONS = 20
MAX_TASKS = 50
CENT = Decimal("0.01")
OPPORTUNITY_FACTS = ("name", "amount", "currency", "stage", "probability", "is_closed", "is_won", "close_date",
                     "account_id", "account_name", "owner_id")

Out = list[tuple[str, str, dict]]


@dataclass(frozen=True)
class SalesConfig:
    """What the sales processors need from the settings (passed in: the functions stay pure)."""

    #: project keys whose keys count when found in text; empty: any key-shaped word
    project_keys: tuple[str, ...] = ()
    #: the currency of single-currency orgs (no CurrencyIsoCode), and of the converted total
    base_currency: str = "USD"
    #: currency → its value in the base currency (``{"EUR": 1.08}``: 1 EUR = 1.08 base)
    rates: dict[str, float] = field(default_factory=dict)
    feature_request: FeatureRequestFields = FeatureRequestFields()
    instance_url: str = "https://example.my.salesforce.com"
    key_pattern: re.Pattern = field(default=re.compile(r"\b([A-Z][A-Z0-9]{1,9}-[1-9][0-9]{0,8})\b"))

    def text_keys(self, text: str | None) -> set[str]:
        if not text:
            return set()
        found = set(self.key_pattern.findall(text))
        if self.project_keys:
            found = {k for k in found if k.split("-", 1)[0] in self.project_keys}
        return found


def _now_ms() -> int:
    return int(time.time() * 1000)


def _link_msg(op: str, **kw: Any) -> dict[str, Any]:
    """A message on ``links.by_key``/``links.by_issue`` (shared with support; ``domain`` tells them apart)."""
    return {"schema": "switchboard.link_message/1", "op": op, "domain": DOMAIN, "at_ms": kw.pop("at_ms", _now_ms()), **kw}


def _msg(op: str, **kw: Any) -> dict[str, Any]:
    return {"schema": "switchboard.sales_message/1", "op": op, "at_ms": kw.pop("at_ms", _now_ms()), **kw}


def _digest(value: Any) -> str:
    return hashlib.sha1(repr(value).encode()).hexdigest()


def is_sales_message(msg: dict[str, Any]) -> bool:
    """Whether a ``links.by_issue`` message belongs to the sales side (support ignores these)."""
    return msg.get("domain") == DOMAIN


# ---------------------------------------------------------------- the feature-request side (pure)

def new_feature_request_state(fr_id: str) -> dict[str, Any]:
    return {"fr_id": fr_id, "record": {}, "deleted": False, "keys": {}, "issues": {}, "told": {"opportunity_id": None, "issues": []},
            "key_field_managed": False, "hub_key_value": "", "version": 0, "digest": "", "last_occurred_ms": 0,
            "issue_seq": {}, "linked_at": {}}


def _copy_fr(state: dict[str, Any]) -> dict[str, Any]:
    st = dict(state)
    st["record"] = dict(state["record"])
    st["keys"] = {k: {"routes": list(v["routes"])} for k, v in state["keys"].items()}
    st["issues"] = dict(state["issues"])
    st["told"] = dict(state["told"])
    st["issue_seq"] = dict(state.get("issue_seq") or {})
    st["linked_at"] = dict(state.get("linked_at") or {})
    return st


def _norm_keys(value: str | None) -> str:
    return " ".join((value or "").upper().split())


def feature_request_keys(cfg: SalesConfig, st: dict[str, Any]) -> dict[str, set[str]]:
    """Jira keys the request names, each with its routes: ``field`` and ``text``."""
    record = st["record"]
    found: dict[str, set[str]] = {}
    for key in cfg.text_keys(record.get("text")):
        found.setdefault(key, set()).add("text")
    value = _norm_keys(record.get("jira_key"))
    if st["key_field_managed"] and st["hub_key_value"] and value == st["hub_key_value"]:
        # the field shows what the hub wrote: its links stay as they were, not re-derived from it
        field_keys = {k for k, v in st["keys"].items() if "field" in v["routes"]}
    else:
        field_keys = cfg.text_keys(value)
    for key in field_keys:
        found.setdefault(key, set()).add("field")
    return found


def on_feature_request_event(cfg: SalesConfig, state: dict[str, Any] | None, event: dict[str, Any]) -> tuple[dict[str, Any], Out]:
    """A feature request changed (a ``sales_event/1`` with object ``feature_request``)."""
    fid = str(event["record_id"])
    st = _copy_fr(state) if state else new_feature_request_state(fid)
    out: Out = []
    occurred = int(event.get("occurred_at_ms") or 0)
    if event["kind"] == "reread" or not fresh_event(state, occurred, event["event_id"]):
        return st, out  # a reread says nothing by itself; an older version of the record changes nothing
    note_applied(st, occurred, event["event_id"])
    if event["kind"] == "delete":
        st["deleted"] = True
    else:
        st["deleted"] = False
        st["record"].update(event.get("fields") or {})
    cause = event["event_id"]
    if not event.get("via_hub"):
        wanted = {} if st["deleted"] else feature_request_keys(cfg, st)
        for key in sorted(set(st["keys"]) | set(wanted)):
            have = set(st["keys"].get(key, {}).get("routes", []))
            now = wanted.get(key, set())
            for route in sorted(have - now):
                out.append(("links.by_key", key, _link_msg("sales_unlink", key=key, feature_request_id=fid, route=route,
                                                            cause_event_id=cause, at_ms=occurred)))
            for route in sorted(now - have):
                out.append(("links.by_key", key, _link_msg("sales_link", key=key, feature_request_id=fid, route=route,
                                                            cause_event_id=cause, at_ms=occurred)))
            if now:
                st["keys"][key] = {"routes": sorted(now)}
            else:
                st["keys"].pop(key, None)
    out.extend(_tell_opportunity(st, cause))
    out.extend(_salesforce_fr_action(cfg, st, cause))
    return st, out


def on_feature_request_message(cfg: SalesConfig, state: dict[str, Any] | None, msg: dict[str, Any]) -> tuple[dict[str, Any], Out]:
    """The issue side says: linked / unlinked / the issue changed (``sales.by_feature_request``)."""
    fid = str(msg["feature_request_id"])
    st = _copy_fr(state) if state else new_feature_request_state(fid)
    iid = str(msg["issue_id"])
    cause = msg.get("cause_event_id") or ""
    if not newer_word(st["issue_seq"], iid, msg.get("seq")):
        return st, []  # an older word of the issue (a replay re-reads it) changes nothing
    if msg["op"] == "unlinked":
        st["issues"].pop(iid, None)
        st["linked_at"].pop(iid, None)
    elif msg["op"] == "linked" or iid in st["issues"]:
        st["issues"][iid] = msg.get("issue") or {"id": iid}
        if msg["op"] == "linked" and isinstance(msg.get("linked_at_ms"), int):
            st["linked_at"][iid] = msg["linked_at_ms"]
    out = _tell_opportunity(st, cause)
    out.extend(_salesforce_fr_action(cfg, st, cause))
    return st, out


def _tell_opportunity(st: dict[str, Any], cause: str) -> Out:
    """Tell the request's opportunity which issues it links it to (full set: idempotent)."""
    opp = st["record"].get("opportunity_id")
    issues = sorted(st["issues"])
    told = st["told"]
    out: Out = []

    if told["opportunity_id"] and told["opportunity_id"] != opp and told["issues"]:
        out.append(("sales.by_opportunity", told["opportunity_id"], _msg("fr_issues", opportunity_id=told["opportunity_id"],
                                                                          feature_request_id=st["fr_id"], issues={}, seq=next_seq(st),
                                                                          cause_event_id=cause)))
    if opp and (opp != told["opportunity_id"] or issues != told["issues"]):
        linked_at = st.get("linked_at") or {}
        out.append(("sales.by_opportunity", opp, _msg("fr_issues", opportunity_id=opp, feature_request_id=st["fr_id"],
                                                      issues={i: {**st["issues"][i], "linked_at_ms": linked_at.get(i)} for i in issues},
                                                      seq=next_seq(st), cause_event_id=cause)))
    st["told"] = {"opportunity_id": opp, "issues": issues if opp else []}
    return out


def _salesforce_fr_action(cfg: SalesConfig, st: dict[str, Any], cause: str) -> Out:
    """The request's desired write-back; emitted only when it changed (a new version)."""
    fid = st["fr_id"]
    if st["deleted"] or (not st["issues"] and not st["version"]):
        return []  # deleted (Salesforce refuses edits in the Recycle Bin) or never linked
    fr = cfg.feature_request
    issues = sorted(st["issues"].items(), key=lambda kv: (kv[1].get("key") or "", kv[0]))
    keys = [i.get("key") or f"#{iid}" for iid, i in issues]
    fields: dict[str, str | None] = {}
    wanted_key = " ".join(keys)
    if st["key_field_managed"] or cfg.text_keys(_norm_keys(st["record"].get("jira_key"))) != set(keys):
        st["key_field_managed"] = True
        st["hub_key_value"] = wanted_key
        fields[fr.jira_key_field] = wanted_key or None
    if len(issues) == 1:
        i = issues[0][1]
        fields[fr.jira_status_field] = i.get("status")
        fields[fr.jira_fix_version_field] = ", ".join(i.get("fix_versions") or []) or None
    else:
        fields[fr.jira_status_field] = "; ".join(f"{i.get('key')}: {i.get('status')}" for _, i in issues) or None
        fields[fr.jira_fix_version_field] = "; ".join(f"{i.get('key')}: {', '.join(i['fix_versions'])}"
                                                      for _, i in issues if i.get("fix_versions")) or None
    return _salesforce_action(st, fr.object_name, fid, fields, [], cause)


def _salesforce_action(st: dict[str, Any], sobject: str, record_id: str, fields: dict[str, Any], tasks: list[dict[str, Any]],
                       cause: str) -> Out:
    desired = {"target": {"sobject": sobject, "id": record_id}, "fields": fields, "tasks": tasks}
    digest = _digest(desired)
    if digest == st["digest"]:
        return []
    st["digest"] = digest
    st["version"] += 1
    return [("actions.salesforce", record_id, {
        "schema": "switchboard.action.salesforce/1", "action_id": f"salesforce|{record_id}|v{st['version']}", "key": record_id,
        "version": st["version"], **desired, "cause": {"event_id": cause, "source": "sales"}, "attempt": 0,
        "created_at_ms": _now_ms(),
    })]


# ---------------------------------------------------------------- the opportunity side (pure)

def new_opportunity_state(opp_id: str) -> dict[str, Any]:
    return {"opp_id": opp_id, "record": {}, "deleted": False, "frs": {}, "fr_seq": {}, "issues": {}, "sent": {"digest": "", "issues": []},
            "tasks": [], "version": 0, "digest": "", "last_occurred_ms": 0, "issue_seq": {}}


def _copy_opp(state: dict[str, Any]) -> dict[str, Any]:
    st = dict(state)
    st["record"] = dict(state["record"])
    st["frs"] = {k: list(v) for k, v in state["frs"].items()}
    st["fr_seq"] = dict(state.get("fr_seq") or {})
    st["issues"] = {k: {"facts": v["facts"], "seen": list(v["seen"])} for k, v in state["issues"].items()}
    st["sent"] = dict(state["sent"])
    st["tasks"] = list(state["tasks"])
    st["issue_seq"] = dict(state.get("issue_seq") or {})
    return st


def opportunity_facts(cfg: SalesConfig, st: dict[str, Any]) -> dict[str, Any]:
    """What an issue needs to know of an opportunity."""
    facts = {k: st["record"].get(k) for k in OPPORTUNITY_FACTS}
    facts["id"] = st["opp_id"]
    facts["currency"] = facts["currency"] or cfg.base_currency
    facts["deleted"] = st["deleted"]
    return facts


def is_open(facts: dict[str, Any]) -> bool:
    """Open: not deleted, not closed (``is_closed``; when unknown, a stage named "Closed …")."""
    if facts.get("deleted"):
        return False
    closed = facts.get("is_closed")
    if closed is None:
        closed = (facts.get("stage") or "").lower().startswith("closed")
    return not closed


def on_opportunity_event(cfg: SalesConfig, state: dict[str, Any] | None, event: dict[str, Any]) -> tuple[dict[str, Any], Out]:
    """An opportunity changed (a ``sales_event/1`` with object ``opportunity``)."""
    oid = str(event["record_id"])
    st = _copy_opp(state) if state else new_opportunity_state(oid)
    occurred = int(event.get("occurred_at_ms") or 0)
    if event["kind"] == "reread" or not fresh_event(state, occurred, event["event_id"]):
        return st, []
    note_applied(st, occurred, event["event_id"])
    if event["kind"] == "delete":
        st["deleted"] = True
    else:  # an upsert after a delete is how polling sees an undelete
        st["deleted"] = False
        st["record"].update(event.get("fields") or {})
    cause = event["event_id"]
    out = _sync_issues(cfg, st, cause)
    out.extend(_opportunity_action(st, cause))
    return st, out


def on_opportunity_message(cfg: SalesConfig, state: dict[str, Any] | None, msg: dict[str, Any]) -> tuple[dict[str, Any], Out]:
    """A feature request names this opportunity's issues (``fr_issues``), or a linked issue changed (``issue_update``)."""
    oid = str(msg["opportunity_id"])
    st = _copy_opp(state) if state else new_opportunity_state(oid)
    cause = msg.get("cause_event_id") or ""
    if msg["op"] == "fr_issues":
        fid = str(msg["feature_request_id"])
        issues = msg.get("issues") or {}
        if not newer_word(st["fr_seq"], fid, msg.get("seq")):
            return st, []  # an older word of this request (a replay re-reads it) changes nothing
        if issues:
            st["frs"][fid] = sorted(issues)
        else:
            st["frs"].pop(fid, None)
        linked = _linked(st)
        for iid in linked:
            if iid not in st["issues"]:
                # resolutions before the link are not ours to announce: before it by the time the link
                # was made in Salesforce, not by when the hub learnt of it (a worker that was down or
                # behind must not swallow a resolution that came after the link)
                facts = issues.get(iid) or {"id": iid}
                linked_at = facts.get("linked_at_ms")
                before = [r["id"] for r in facts.get("resolutions") or []
                          if not isinstance(linked_at, int) or int(r.get("at_ms") or 0) < linked_at]
                st["issues"][iid] = {"facts": facts, "seen": before[-MAX_SEEN:]}
                _announce_resolutions(cfg, st, iid)
        for iid in list(st["issues"]):
            if iid not in linked:
                del st["issues"][iid]
    elif msg["op"] == "issue_update":
        iid = str(msg["issue_id"])
        entry = st["issues"].get(iid)
        if entry is not None and newer_word(st["issue_seq"], iid, msg.get("seq")):
            entry["facts"] = msg.get("issue") or {}
            _announce_resolutions(cfg, st, iid)
    out = _sync_issues(cfg, st, cause)
    out.extend(_opportunity_action(st, cause))
    return st, out


def _announce_resolutions(cfg: SalesConfig, st: dict[str, Any], iid: str) -> None:
    """One Task per resolution of a linked issue not seen yet, while the opportunity is open."""
    entry = st["issues"][iid]
    facts = entry["facts"]
    for r in facts.get("resolutions") or []:
        if r["id"] in entry["seen"]:
            continue
        entry["seen"] = (entry["seen"] + [r["id"]])[-MAX_SEEN:]
        opp = opportunity_facts(cfg, st)
        if is_open(opp) and st["record"]:
            task = done_task(cfg, opp, facts, r)
            if all(t["id"] != task["id"] for t in st["tasks"]):
                st["tasks"] = (st["tasks"] + [task])[-MAX_TASKS:]


def _linked(st: dict[str, Any]) -> list[str]:
    return sorted({i for issues in st["frs"].values() for i in issues})


def _sync_issues(cfg: SalesConfig, st: dict[str, Any], cause: str) -> Out:
    """Send the opportunity's facts to each linked issue when they or the links changed; tell dropped issues.

    Every message carries ``seq``, the opportunity's own counter (kept in its state, so it only grows
    across restarts): the issue side applies a message only when its ``seq`` is newer than the last
    one it applied for this opportunity, so a replay of ``sales.by_issue`` from offset 0 never shows
    older totals, even briefly."""
    linked = _linked(st)
    facts = opportunity_facts(cfg, st)
    digest = _digest(facts)
    before = set(st["sent"]["issues"])
    out: Out = []

    for iid in linked:
        if iid not in before or digest != st["sent"]["digest"]:
            out.append(("sales.by_issue", iid, _msg("opportunity", issue_id=iid, opportunity_id=st["opp_id"], linked=True,
                                                    opportunity=facts, seq=next_seq(st), cause_event_id=cause)))
    for iid in sorted(before - set(linked)):
        out.append(("sales.by_issue", iid, _msg("opportunity", issue_id=iid, opportunity_id=st["opp_id"], linked=False,
                                                seq=next_seq(st), cause_event_id=cause)))
    st["sent"] = {"digest": digest, "issues": linked}
    return out


def done_task(cfg: SalesConfig, opp: dict[str, Any], issue: dict[str, Any], resolution: dict[str, Any]) -> dict[str, Any]:
    """The Task telling an opportunity's owner that a linked issue is resolved. Its id is stable:
    the converger makes each id once (and finds it by the ``[ref …]`` in the description after a crash)."""
    task_id = f"{opp['id']}:{issue.get('id')}:{resolution['id']}"
    key = issue.get("key") or f"Jira issue {issue.get('id')}"
    fix = ", ".join(resolution.get("fix_versions") or [])
    subject = f"{key} is resolved — {opp.get('name') or opp['id']}"
    text = (f"{key}, requested through this opportunity's feature requests, is resolved"
            f" ({resolution.get('status') or 'Done'}{', fix version ' + fix if fix else ''}).")
    return {"id": task_id, "owner_id": opp.get("owner_id"), "what_id": opp["id"], "subject": subject[:255],
            "description": f"{text}\n— Switchboard [ref {task_id}]", "status": "Not Started", "priority": "Normal"}


def _opportunity_action(st: dict[str, Any], cause: str) -> Out:
    if not st["tasks"] and not st["version"]:
        return []
    return _salesforce_action(st, "Opportunity", st["opp_id"], {}, list(st["tasks"]), cause)


# ---------------------------------------------------------------- the issue side (pure)

def new_issue_state(issue_id: str) -> dict[str, Any]:
    return {"issue_id": issue_id, "issue": {"id": issue_id}, "frs": {}, "opps": {}, "opp_seq": {}, "version": 0, "digest": "",
            "last_occurred_ms": 0}


def _copy_issue(state: dict[str, Any]) -> dict[str, Any]:
    st = dict(state)
    st["issue"] = dict(state["issue"])
    st["frs"] = {k: {"routes": list(v["routes"])} for k, v in state["frs"].items()}
    st["opps"] = dict(state["opps"])
    st["opp_seq"] = dict(state.get("opp_seq") or {})  # states stored before seq existed have none
    return st


def issue_facts(st: dict[str, Any]) -> dict[str, Any]:
    """What Salesforce may know of an issue: key, status and fix versions (never the summary)."""
    i = st["issue"]
    return {"id": st["issue_id"], "key": i.get("key"), "status": i.get("status"), "status_category": i.get("status_category"),
            "fix_versions": list(i.get("fix_versions") or []), "resolutions": list(i.get("resolutions") or []),
            "deleted": bool(i.get("deleted"))}


def on_tracker_event(cfg: SalesConfig, state: dict[str, Any] | None, event: dict[str, Any]) -> tuple[dict[str, Any], Out]:
    """A Jira issue changed: remember it, note resolutions, tell its feature requests and opportunities."""
    iid = str(event["issue"]["id"])
    st = _copy_issue(state) if state else new_issue_state(iid)
    occurred = int(event.get("occurred_at_ms") or 0)
    if not fresh_event(state, occurred, event["event_id"]):
        return st, []
    note_applied(st, occurred, event["event_id"])
    issue = st["issue"]
    before = issue_facts(st)
    incoming = event["issue"]
    for k in ("key", "status", "status_category", "fix_versions"):
        v = incoming.get(k)
        if incoming.get("partial") and v in (None, [], ""):
            continue
        issue[k] = v
    if event.get("kind") == "issue_deleted":
        issue["deleted"] = True
    was, now = before["status_category"], issue.get("status_category")
    if was is not None and was != "done" and now == "done":
        resolutions = list(issue.get("resolutions") or [])
        if all(r["id"] != event["event_id"] for r in resolutions):
            resolutions.append({"id": event["event_id"], "at_ms": occurred, "status": issue.get("status"),
                                "fix_versions": list(issue.get("fix_versions") or [])})
        issue["resolutions"] = resolutions[-MAX_RESOLUTIONS:]
    facts = issue_facts(st)
    out: Out = []
    if facts != before:
        for fid in sorted(st["frs"]):
            out.append(("sales.by_feature_request", fid, _msg("issue_update", feature_request_id=fid, issue_id=iid, issue=facts,
                                                              seq=next_seq(st), cause_event_id=event["event_id"])))
        for oid in sorted(st["opps"]):
            out.append(("sales.by_opportunity", oid, _msg("issue_update", opportunity_id=oid, issue_id=iid, issue=facts,
                                                          seq=next_seq(st), cause_event_id=event["event_id"])))
    out.extend(_jira_action(cfg, st, event["event_id"]))
    return st, out


def on_issue_message(cfg: SalesConfig, state: dict[str, Any] | None, msg: dict[str, Any]) -> tuple[dict[str, Any], Out]:
    """Links from the key side (``sales_link``/``sales_unlink`` on links.by_issue) and opportunity facts (sales.by_issue)."""
    iid = str(msg["issue_id"])
    st = _copy_issue(state) if state else new_issue_state(iid)
    out: Out = []
    op = msg["op"]
    cause = msg.get("cause_event_id") or ""
    if op == "sales_link":
        fid = str(msg["feature_request_id"])
        f = st["frs"].setdefault(fid, {"routes": []})
        if not f["routes"]:
            out.append(("sales.by_feature_request", fid, _msg("linked", feature_request_id=fid, issue_id=iid, issue=issue_facts(st),
                                                              linked_at_ms=msg.get("at_ms"), seq=next_seq(st), cause_event_id=cause)))
        f["routes"] = sorted(set(f["routes"]) | {msg.get("route") or "explicit"})
    elif op == "sales_unlink":
        fid = str(msg["feature_request_id"])
        f = st["frs"].get(fid)
        if f is not None:
            f["routes"] = [r for r in f["routes"] if r != msg.get("route")]
            if not f["routes"]:
                del st["frs"][fid]
                out.append(("sales.by_feature_request", fid, _msg("unlinked", feature_request_id=fid, issue_id=iid, seq=next_seq(st),
                                                                  cause_event_id=cause)))
    elif op == "opportunity":
        oid = str(msg["opportunity_id"])
        # kept after an unlink too, so a replayed older link stays ignored
        if not newer_word(st["opp_seq"], oid, msg.get("seq")):
            return st, out  # older facts or links than those applied (a replay re-reads them): never roll back
        if msg.get("linked"):
            if oid not in st["opps"]:  # the issue's facts and resolutions so far, as the opportunity's baseline
                out.append(("sales.by_opportunity", oid, _msg("issue_update", opportunity_id=oid, issue_id=iid, issue=issue_facts(st),
                                                              seq=next_seq(st), cause_event_id=cause)))
            st["opps"][oid] = msg["opportunity"]
        else:
            st["opps"].pop(oid, None)
    out.extend(_jira_action(cfg, st, cause))
    return st, out


def _money(value: Any) -> Decimal:
    return Decimal(str(value)) if value is not None else Decimal(0)


def revenue_summary(cfg: SalesConfig, opps: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Revenue at stake from the linked opportunities' facts: open ones only, one total per currency
    (amount and probability-weighted amount), a base-currency total when every currency has a rate."""
    by_currency: dict[str, dict[str, Any]] = {}
    accounts: dict[str, str] = {}
    close_dates: list[str] = []
    listed = []
    for oid, o in sorted(opps.items()):
        if not is_open(o):
            continue
        cur = o.get("currency") or cfg.base_currency
        amount = _money(o.get("amount"))
        weighted = (amount * _money(o.get("probability")) / 100).quantize(CENT, ROUND_HALF_UP)
        t = by_currency.setdefault(cur, {"count": 0, "amount": Decimal(0), "weighted": Decimal(0)})
        t["count"] += 1
        t["amount"] += amount
        t["weighted"] += weighted
        if o.get("account_id") or o.get("account_name"):
            accounts[o.get("account_id") or f"name:{o['account_name']}"] = o.get("account_name") or o["account_id"]
        if o.get("close_date"):
            close_dates.append(o["close_date"])
        listed.append({"id": oid, "name": o.get("name"), "account": o.get("account_name") or o.get("account_id"),
                       "stage": o.get("stage"), "amount": float(amount), "currency": cur, "close_date": o.get("close_date")})
    converted = None
    rates = {**{c: r for c, r in cfg.rates.items()}, cfg.base_currency: 1}
    if cfg.rates and by_currency and all(c in rates for c in by_currency):
        amount = sum((t["amount"] * _money(rates[c]) for c, t in by_currency.items()), Decimal(0))
        weighted = sum((t["weighted"] * _money(rates[c]) for c, t in by_currency.items()), Decimal(0))
        converted = {"currency": cfg.base_currency, "amount": float(amount.quantize(CENT, ROUND_HALF_UP)),
                     "weighted": float(weighted.quantize(CENT, ROUND_HALF_UP))}
    return {
        "open_count": len(listed),
        "totals": {c: {"count": t["count"], "amount": float(t["amount"].quantize(CENT, ROUND_HALF_UP)),
                       "weighted": float(t["weighted"].quantize(CENT, ROUND_HALF_UP))} for c, t in sorted(by_currency.items())},
        "converted": converted,
        "missing_rates": sorted(c for c in by_currency if cfg.rates and c not in rates),
        "accounts": sorted(accounts.values()),
        "account_count": len(accounts),
        "earliest_close_date": min(close_dates) if close_dates else None,
        "opportunities": listed,
    }


def _jira_action(cfg: SalesConfig, st: dict[str, Any], cause: str) -> Out:
    iid = st["issue_id"]
    if not st["opps"] and not st["version"]:
        return []  # never linked to an opportunity: nothing to show in Jira
    desired = revenue_summary(cfg, st["opps"])
    digest = _digest(desired)
    if digest == st["digest"]:
        return []
    st["digest"] = digest
    st["version"] += 1
    key = f"revenue:{iid}"
    return [("actions.jira", key, {
        "schema": "switchboard.action.jira_revenue/1", "action_id": f"jira|{key}|v{st['version']}", "key": key, "issue_id": iid,
        "issue_key": st["issue"].get("key"), "version": st["version"], "revenue": desired,
        "cause": {"event_id": cause, "source": "sales"}, "attempt": 0, "created_at_ms": _now_ms(),
    })]


# ---------------------------------------------------------------- the agents

def sales_config(hub) -> SalesConfig:
    s, sf = hub.settings.sales, hub.settings.salesforce
    return SalesConfig(project_keys=tuple(s.project_keys), base_currency=s.base_currency, rates=dict(s.rates),
                       feature_request=sf.feature_request, instance_url=sf.instance_url or SalesConfig.instance_url)


def register(hub) -> None:
    """Wire the three sales sides. Needs the support key side (``support.register``) running:
    it resolves keys to issue ids and forwards ``sales_link``/``sales_unlink`` to links.by_issue."""
    from functools import partial

    from hub.processors.common import json_table, register_side

    cfg = sales_config(hub)
    stats = hub.pipelines.setdefault("sales", {})

    def only(kind: str, step):
        """events.sales carries every object: each side takes its own (None: nothing to store)."""
        def run(state, value):
            if value.get("object") != kind or not value.get("record_id"):
                return None, []
            return step(state, value)
        return run

    def sales_only(state, value):
        if not is_sales_message(value):
            return None, []  # a support link message: the support issue side's
        return on_issue_message(cfg, state, value)

    register_side(hub, name="sales-feature-requests", table=json_table(hub, "sales-feature-requests"), stats=stats, steps={
        "events.sales": (lambda v: str(v.get("record_id")), only("feature_request", partial(on_feature_request_event, cfg))),
        "sales.by_feature_request": (lambda v: str(v["feature_request_id"]), partial(on_feature_request_message, cfg)),
    })
    register_side(hub, name="sales-opportunities", table=json_table(hub, "sales-opportunities"), stats=stats, steps={
        "events.sales": (lambda v: str(v.get("record_id")), only("opportunity", partial(on_opportunity_event, cfg))),
        "sales.by_opportunity": (lambda v: str(v["opportunity_id"]), partial(on_opportunity_message, cfg)),
    })
    register_side(hub, name="sales-issues", table=json_table(hub, "sales-issues"), stats=stats, steps={
        "events.tracker": (lambda v: str(v["issue"]["id"]), partial(on_tracker_event, cfg)),
        "links.by_issue": (lambda v: str(v["issue_id"]), sales_only),
        "sales.by_issue": (lambda v: str(v["issue_id"]), partial(on_issue_message, cfg)),
    })
