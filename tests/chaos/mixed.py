"""The support and sales paths under faults: a mixed workload played on the fakes as people would,
and an audit of what the fakes show afterwards (issue 5: "run it again over the support and sales
paths once they exist").

The workload is ``issues`` Jira issues. Each one:

- is created in Jira (signed webhook); one in five is in the restricted LEGAL project (summary
  ``CONFIDENTIAL-<n> …``), one in four is Highest, so an incident that pages and posts;
- is named by ``tickets`` Zendesk tickets (signed trigger webhooks), by the key field, a
  ``jira_<key>`` tag or the subject in turn;
- is asked for by ``deals`` Salesforce opportunities, each through a feature request naming the key
  (Change Data Capture, through ``switchboard cdc salesforce``); one in three has its amount changed
  and one in five is then Closed Lost;
- moves to In Progress, then to Done with fix version ``9.1``.

The audit reads only the fakes (what support, sales and on-call people would see):

``lost``              per ticket: the remote link on its issue, the key and the final status on the
                      ticket, one internal note per transition and the ``jira_resolved`` tag; per
                      issue: the ticket count, the revenue at stake equal to a recomputation from the
                      fake Salesforce, one Task per deal still open at resolution, key / status / fix
                      version on every feature request; per incident: the page (resolved) and the post
``duplicates``        remote links beyond one per ticket, internal notes beyond one per reference,
                      Tasks beyond one per deal and resolution, PagerDuty incidents beyond one per
                      dedup key, top-level Slack messages beyond one per incident and channel
``order_violations``  a ticket's status field written with an older issue status than before it
``leaks``             a restricted issue's summary in any call to Zendesk, Salesforce or a public
                      Slack channel
"""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from hub.stack import SANDBOX_ZENDESK_KEY_FIELD, SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD
from tests.chaos.harness import Audit

FIX_VERSION = "9.1"
PUBLIC_CHANNELS = ("C0INCIDENTS", "C0GENERAL")
_STATUS_RANK = {"To Do": 0, "In Progress": 1, "Done": 2}
_REF = re.compile(r"\[ref ([^\]]+)\]")


@dataclass
class Item:
    """One Jira issue of the workload and what was made to point at it."""

    n: int
    project: str
    incident: bool
    issue_id: str = ""
    key: str = ""
    tickets: list[int] = field(default_factory=list)
    deals: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    status: str = "To Do"  # the newest status made in Jira
    open_at_resolution: set[str] = field(default_factory=set)

    @property
    def restricted(self) -> bool:
        return self.project == "LEGAL"

    @property
    def summary(self) -> str:
        word = f"CONFIDENTIAL-{self.n}" if self.restricted else f"Feature {self.n}"
        return f"{word}: export to CSV"


@dataclass
class MixedWorkload:
    issues: int
    tickets: int = 3
    deals: int = 2
    seed: int = 7
    items: list[Item] = field(default_factory=list)
    inputs: Counter = field(default_factory=Counter)  # what was made in each fake: jira / zendesk / salesforce changes

    def __post_init__(self) -> None:
        self.items = [Item(n, "LEGAL" if n % 5 == 4 else "OPS", incident=n % 4 == 0) for n in range(self.issues)]


async def play(work: MixedWorkload, jira: Any, zd: Any, sf: Any, *, wave: int = 4, pause_s: float = 0.5) -> None:
    """Make the workload's changes in the fakes, ``wave`` issues at a time, and send their webhooks.

    Every change is made as a person would make it in the vendor's UI; the fakes send the signed
    webhooks (Jira, Zendesk) or publish the change events (Salesforce) those changes cause.
    """
    from sandbox import salesforce as sf_fake
    from sandbox import zendesk as zendesk_fake

    rng = random.Random(work.seed)
    person = sf_fake.DEFAULT_PERSON_USER_ID
    account = sf.create("Account", {"Name": "Chaos Corp"}, user_id=person).id
    work.inputs["salesforce"] += 1
    stages = [s for s in sf_fake.STAGES if not s.startswith("Closed")]
    for start in range(0, len(work.items), wave):
        batch = work.items[start:start + wave]
        for it in batch:
            issue = jira.create_issue(it.project, it.summary, issue_type="Incident" if it.incident else "Story",
                                      priority="Highest" if it.incident else "Medium")
            it.issue_id, it.key = issue.id, issue.key
            work.inputs["jira"] += 1
        await jira.deliver()
        for it in batch:
            for t in range(work.tickets):
                route = t % 3
                kw: dict[str, Any] = {}
                if route == 0:
                    kw["custom_fields"] = {SANDBOX_ZENDESK_KEY_FIELD: it.key}
                elif route == 1:
                    kw["tags"] = [f"jira_{it.key.lower()}"]
                subject = f"Customer {t} cannot export, see {it.key}" if route == 2 else f"Customer {t} cannot export"
                update = zd.create_ticket(subject=subject, comment="Exports fail since this morning.",
                                          actor_id=zendesk_fake.DEFAULT_AGENT_ID, channel="web", organization_id=(t % 5) + 1, **kw)
                it.tickets.append(update.ticket.id)
                work.inputs["zendesk"] += 1
            for d in range(work.deals):
                opp = sf.create("Opportunity", {"Name": f"Deal {it.n}-{d}", "Amount": rng.randrange(1000, 90000),
                                                "StageName": rng.choice(stages), "CloseDate": "2027-06-30", "AccountId": account,
                                                "CurrencyIsoCode": rng.choice(["USD", "EUR"])}, user_id=person).id
                it.deals.append(opp)
                fr = sf.create("Feature_Request__c", {"Name": f"FR {it.n}-{d}", "Opportunity__c": opp, "Jira_Key__c": it.key},
                               user_id=person).id
                it.requests.append(fr)
                work.inputs["salesforce"] += 2
                roll = rng.random()
                if roll < 0.33:
                    sf.update("Opportunity", [opp], {"Amount": rng.randrange(500, 120000)}, user_id=person)
                    work.inputs["salesforce"] += 1
                elif roll < 0.53:
                    sf.update("Opportunity", [opp], {"StageName": "Closed Lost"}, user_id=person)
                    work.inputs["salesforce"] += 1
        await zd.flush_webhooks()
        await asyncio.sleep(pause_s)
    for status in ("In Progress", "Done"):
        for start in range(0, len(work.items), wave):
            for it in work.items[start:start + wave]:
                if status == "Done":
                    it.open_at_resolution = {o for o in it.deals if not sf.records["Opportunity"][o].values.get("IsClosed")
                                             and sf.records["Opportunity"][o].deleted_at_ms is None}
                    jira.update_issue(it.issue_id, status="Done", fix_versions=[FIX_VERSION])
                else:
                    jira.update_issue(it.issue_id, status=status)
                it.status = status
                work.inputs["jira"] += 1
            await jira.deliver()
            await asyncio.sleep(pause_s)


def recompute(sf: Any, key: str) -> dict[str, dict[str, float]]:
    """Revenue at stake on ``key`` straight from the fake's records: the opportunities an undeleted
    feature request naming the key links to (see ``SalesforceState.revenue_at_stake``)."""
    return sf.revenue_at_stake(fr.values.get("Opportunity__c") for fr in sf.records["Feature_Request__c"].values()
                               if fr.deleted_at_ms is None and fr.values.get("Jira_Key__c") == key)


@dataclass
class MixedCounts:
    lost: int = 0
    duplicates: int = 0
    order_violations: int = 0
    leaks: int = 0

    def total(self) -> int:
        return sum(self.as_dict().values())

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass
class MixedAudit(Audit):
    """The incident audit's shape (``counts``, ``examples``, ``clean``) with these counters."""

    lost_by_kind: dict[str, int] = field(default_factory=dict)


def _status_writes(zd: Any) -> dict[int, list[str]]:
    """Each ticket's status-field values in the order the hub wrote them (PUTs Zendesk answered 200)."""
    out: dict[int, list[str]] = defaultdict(list)
    path = re.compile(r"/api/v2/tickets/(\d+)\.json$")
    for call in zd.calls:
        m = path.search(call.path)
        if call.method != "PUT" or not m or call.status != 200 or not isinstance(call.body, dict):
            continue
        for f in (call.body.get("ticket") or {}).get("custom_fields") or []:
            if isinstance(f, dict) and str(f.get("id")) == str(SANDBOX_ZENDESK_STATUS_FIELD) and f.get("value"):
                out[int(m.group(1))].append(str(f["value"]))
    return out


def audit_mixed(work: MixedWorkload, *, jira: Any, zd: Any, sf: Any, slack: Any, pagerduty: Any) -> MixedAudit:
    c = MixedCounts()
    ex: dict[str, list[str]] = defaultdict(list)
    lost: Counter = Counter()

    def note(kind: str, what: str) -> None:
        if len(ex[kind]) < 8:
            ex[kind].append(what)

    def missing(kind: str, what: str) -> None:
        c.lost += 1
        lost[kind] += 1
        note("lost", f"{kind}: {what}")

    status_writes = _status_writes(zd)
    tasks = [t for t in sf.records["Task"].values()]
    pages = pagerduty.opened_per_dedup_key()
    pd_status = {i.dedup_key: i.status for i in pagerduty.incidents}
    for it in work.items:
        if not it.key:
            continue
        issue = jira.find(it.issue_id)
        # ------------------------------------------------------------------ support
        links = Counter(int(str(l["object"]["url"]).rsplit("/", 1)[1]) for l in issue.remote_links)
        for tid, n in links.items():
            if n > 1:
                c.duplicates += n - 1
                note("duplicates", f"{it.key}: {n} remote links to ticket {tid}")
        counts = issue.properties.get("switchboard.support") or {}
        if counts.get("tickets") != len(it.tickets):
            missing("ticket count", f"{it.key} shows {counts.get('tickets')} tickets, {len(it.tickets)} linked")
        for tid in it.tickets:
            ticket = zd.ticket(tid)
            if tid not in links:
                missing("remote link", f"no link to ticket {tid} on {it.key}")
            if ticket.custom_fields.get(SANDBOX_ZENDESK_LINKS_FIELD) != it.key:
                missing("key on ticket", f"ticket {tid} shows {ticket.custom_fields.get(SANDBOX_ZENDESK_LINKS_FIELD)!r}, not {it.key}")
            want = f"{it.key}: {it.status}"
            if ticket.custom_fields.get(SANDBOX_ZENDESK_STATUS_FIELD) != want:
                missing("status on ticket", f"ticket {tid} shows {ticket.custom_fields.get(SANDBOX_ZENDESK_STATUS_FIELD)!r}, not {want!r}")
            refs = Counter(m.group(1) for cm in ticket.comments if not cm.public for m in _REF.finditer(cm.body))
            for ref, n in refs.items():
                if n > 1:
                    c.duplicates += n - 1
                    note("duplicates", f"ticket {tid}: note [ref {ref}] {n} times")
            transitions = {"To Do": 0, "In Progress": 1, "Done": 2}[it.status]
            if len(refs) < transitions:
                missing("internal note", f"ticket {tid}: {len(refs)} note(s) for {transitions} transition(s)")
            if it.status == "Done" and "jira_resolved" not in ticket.tags:
                missing("resolved tag", f"ticket {tid} without jira_resolved")
            shown = [_STATUS_RANK.get(v.split(": ", 1)[-1], -1) for v in status_writes.get(tid, [])]
            for before, after in zip(shown, shown[1:]):
                if after < before:
                    c.order_violations += 1
                    note("order_violations", f"ticket {tid}: status field went {status_writes[tid]}")
                    break
        # ------------------------------------------------------------------ sales
        view = (issue.properties.get("switchboard.revenue") or {}).get("totals")
        want_rev = recompute(sf, it.key)
        if (view or {}) != want_rev:
            missing("revenue", f"{it.key} shows {view}, recomputed {want_rev}")
        names = re.compile(rf"\b{re.escape(it.key)}\b")
        mine = [t for t in tasks if names.search(t.values.get("Subject") or "")]
        per_deal = Counter(t.values.get("WhatId") for t in mine)
        for what_id, n in per_deal.items():
            if n > 1:
                c.duplicates += n - 1
                note("duplicates", f"{it.key}: {n} Tasks on {what_id}")
        if it.status == "Done":
            for opp in sorted(it.open_at_resolution - set(per_deal)):
                missing("task", f"no Task on {opp} for {it.key}")
        for fr in it.requests:
            v = sf.records["Feature_Request__c"][fr].values
            want_fr = (it.key, it.status, FIX_VERSION if it.status == "Done" else None)
            got = (v.get("Jira_Key__c"), v.get("Jira_Status__c"), v.get("Jira_Fix_Version__c"))
            if got != want_fr:
                missing("feature request", f"{fr} shows {got}, not {want_fr}")
        # ------------------------------------------------------------------ incidents
        if it.incident:
            dedups = [d for d in pages if d.rsplit("/", 1)[-1] == it.issue_id]
            for d in dedups:
                if pages[d] > 1:
                    c.duplicates += pages[d] - 1
                    note("duplicates", f"{it.key}: {pages[d]} PagerDuty incidents for {d}")
            if not dedups:
                missing("page", f"{it.key} never paged")
            elif it.status == "Done" and not all(pd_status.get(d) == "resolved" for d in dedups):
                missing("page resolved", f"{it.key}: page {[pd_status.get(d) for d in dedups]}")
            channel = "C0LEGAL" if it.restricted else "C0INCIDENTS"
            tops = [m for m in (slack.messages.get(channel) or {}).values() if not m.is_reply and
                    str(((m.metadata or {}).get("event_payload") or {}).get("message_key", "")).rsplit("/", 1)[-1] == it.issue_id]
            if not tops:
                missing("post", f"{it.key} never posted in {channel}")
            elif len(tops) > 1:
                c.duplicates += len(tops) - 1
                note("duplicates", f"{it.key} posted {len(tops)} times in {channel}")
    # ---------------------------------------------------------------------- leaks
    marks = [(it.key, f"CONFIDENTIAL-{it.n}") for it in work.items if it.restricted and it.key]
    calls = [(name, call) for name, state in (("zendesk", zd), ("salesforce", sf)) for call in state.calls]
    calls += [("slack", call) for call in slack.calls
              if isinstance(call.body, dict) and str(call.body.get("channel") or "") in PUBLIC_CHANNELS]
    for vendor, call in calls:
        blob = repr(call.body) + repr(call.query)
        for key, mark in marks:
            if mark in blob or (vendor == "slack" and key in blob):
                c.leaks += 1
                note("leaks", f"{key} reached {vendor} ({call.method} {call.path})")
    return MixedAudit(c, dict(ex), lost_by_kind=dict(lost))


def visible_state(work: MixedWorkload, *, jira: Any, zd: Any, sf: Any, slack: Any, pagerduty: Any) -> dict[str, Any]:
    """What people see of the workload in each tool (not the vendors' own bookkeeping, such as
    modification times, which a write of the same values moves): compared before, during and after
    a replay, where nothing may change."""
    import copy

    seen: dict[str, Any] = {}
    for it in work.items:
        if not it.key:
            continue
        issue = jira.find(it.issue_id)
        seen[f"jira {it.key}"] = (sorted((l.get("globalId"), repr(l.get("object"))) for l in issue.remote_links),
                                  copy.deepcopy(issue.properties))
        for tid in it.tickets:
            t = zd.ticket(tid)
            seen[f"zendesk ticket {tid}"] = (dict(t.custom_fields), sorted(t.tags), [(c.body, c.public) for c in t.comments])
        for fr in it.requests:
            v = sf.records["Feature_Request__c"][fr].values
            seen[f"salesforce {fr}"] = (v.get("Jira_Key__c"), v.get("Jira_Status__c"), v.get("Jira_Fix_Version__c"))
    seen["salesforce tasks"] = sorted((t.values.get("WhatId"), t.values.get("Subject")) for t in sf.records["Task"].values())
    seen["slack"] = sorted((cid, ts, m.text, len(m.replies)) for cid, msgs in slack.messages.items() for ts, m in msgs.items())
    seen["pagerduty"] = sorted((i.dedup_key, i.status) for i in pagerduty.incidents)
    return seen


def changed(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """The entries of ``now`` that differ from ``before`` (what a person would see change)."""
    return [f"{k}: {before.get(k)!r:.200} -> {now.get(k)!r:.200}" for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]


def shown_values(*, jira: Any, zd: Any, sf: Any) -> dict[str, Any]:
    """The values people see, by the ids the hub writes to (for :func:`write_changes`)."""
    import copy

    return {
        "jira": {ref: (copy.deepcopy(i.properties), {l.get("globalId"): copy.deepcopy(l.get("object")) for l in i.remote_links})
                 for i in jira.issues.values() for ref in (i.id, i.key)},  # the hub names an issue by id or key
        "zendesk": {t.id: (dict(t.custom_fields), set(t.tags)) for t in zd.tickets.values()},
        "salesforce": {rid[:15]: dict(r.values) for rid, r in sf.records["Feature_Request__c"].items()},
    }


_JIRA_PROPERTY = re.compile(r"/rest/api/\d+/issue/([^/]+)/properties/([^/]+)$")
_JIRA_LINK = re.compile(r"/rest/api/\d+/issue/([^/]+)/remotelink$")
_ZD_TICKET = re.compile(r"/api/v2/tickets/(\d+)\.json$")
_SF_RECORD = re.compile(r"/sobjects/[A-Za-z_]+/([A-Za-z0-9]{15,18})$")


def write_changes(vendor: str, call: Any, shown: dict[str, Any]) -> str | None:
    """What a write sets that differs from what was shown before it (``None``: it sets the same
    values again). A write that changes something, even for a moment, is an effect."""
    body = call.body if isinstance(call.body, dict) else {}
    if vendor == "jira":
        if m := _JIRA_PROPERTY.search(call.path):
            props = shown["jira"].get(m.group(1), ({}, {}))[0]
            return None if props.get(m.group(2)) == body else f"{m.group(2)} on {m.group(1)}"
        if m := _JIRA_LINK.search(call.path):
            links = shown["jira"].get(m.group(1), ({}, {}))[1]
            return None if links.get(body.get("globalId")) == body.get("object") else f"remote link {body.get('globalId')}"
    elif vendor == "zendesk" and (m := _ZD_TICKET.search(call.path)):
        fields, tags = shown["zendesk"].get(int(m.group(1)), ({}, set()))
        t = body.get("ticket") or {}
        differs = [f["id"] for f in t.get("custom_fields") or [] if fields.get(int(f["id"])) != f.get("value")]
        differs += [tag for tag in t.get("additional_tags") or [] if tag not in tags]
        differs += [tag for tag in t.get("remove_tags") or [] if tag in tags]
        return f"ticket {m.group(1)}: {differs}" if differs else None
    elif vendor == "salesforce" and call.method == "PATCH" and (m := _SF_RECORD.search(call.path)):
        values = shown["salesforce"].get(m.group(1)[:15], {})
        differs = [k for k, v in body.items() if values.get(k) != v]
        return f"{m.group(1)}: {differs}" if differs else None
    return f"{call.method} {call.path}"  # a write this check does not know: counted as a change
