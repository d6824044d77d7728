"""The read model behind ``switchboard web``, ``switchboard trace`` and ``switchboard top``.

Pure and in memory: :meth:`ReadModel.apply` takes one Kafka record (topic short name, partition,
offset, key, decoded value) and updates the views; the query methods build the JSON documents the
API serves and the pages render. No Kafka, no HTTP, no clock here (``hub/web/feed.py`` feeds it).

Where each view comes from:

* per-issue state, complete at any age: the processors' own faust tables, read from their
  **compacted changelog topics** (``incidents``, ``support-issues``, ``sales-issues``). Those are
  the only records that hold the whole current state of an issue after the 7–30 day retention of
  the event and action topics; the model decodes them read-only and never writes them;
* the timeline and the lineage: ``inbound.*``, ``events.*``, the processors' keyed messages
  (``links.*``, ``sales.*``), ``actions.*`` and ``actions.results``, joined on the event id every
  one of them carries (``event_id``, ``cause.event_id``, ``cause_event_id``);
* dead letters: ``deadletter``, each named by its partition and offset.

Restricted issues (the routing file's rule: a restricted project, a security level, or no project)
are shown to a viewer without access to that project with no summary and no text taken from the
issue or its tickets; that redaction happens here, once, for the API and the pages alike.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

#: the faust tables whose changelogs hold per-issue state (see hub/processors/*)
STATE_TABLES = ("incidents", "support-issues", "sales-issues")
#: topics read for timelines, lineage and dead letters (short names, topics/topics.yaml)
EVENT_TOPICS = ("inbound.jira", "inbound.zendesk", "inbound.salesforce", "events.tracker", "events.support", "events.sales")
MESSAGE_TOPICS = ("links.by_key", "links.by_issue", "links.by_ticket", "sales.by_issue", "sales.by_opportunity", "sales.by_feature_request")
ACTION_TOPICS = ("actions.pagerduty", "actions.slack", "actions.jira", "actions.zendesk", "actions.salesforce")
READ_TOPICS = EVENT_TOPICS + MESSAGE_TOPICS + ACTION_TOPICS + ("actions.results", "deadletter")

#: which processor writes each topic (for the lineage); a tuple when it depends on the key
PRODUCER = {
    "inbound.jira": "receiver (webhook) or poller", "inbound.zendesk": "receiver (webhook) or poller",
    "inbound.salesforce": "poller (SOQL or CDC)",
    "events.tracker": "normalize-jira", "events.support": "normalize-zendesk", "events.sales": "normalize-salesforce",
    "links.by_key": "support-tickets / sales-feature-requests", "links.by_issue": "support-keys",
    "links.by_ticket": "support-issues", "sales.by_issue": "sales-opportunities",
    "sales.by_opportunity": "sales-feature-requests / sales-issues", "sales.by_feature_request": "sales-issues",
    "actions.pagerduty": "incidents", "actions.slack": "incidents", "actions.zendesk": "support-tickets",
    "actions.jira": "support-issues (support view) / sales-issues (revenue view)",
    "actions.salesforce": "sales-feature-requests / sales-opportunities",
}

MAX_TRACE_ITEMS = 200
FACT_KEYS = ("key", "project_key", "summary", "status", "status_category", "security_level", "url", "issue_type", "priority")


@dataclass(frozen=True)
class Viewer:
    """Who is looking: the name, the restricted projects they may see in full, and replay rights."""

    name: str
    restricted_projects: frozenset[str] = frozenset()
    admin: bool = False

    def may_see(self, project: str | None) -> bool:
        if "*" in self.restricted_projects:
            return True
        return bool(project) and project in self.restricted_projects


@dataclass
class Position:
    topic: str
    partition: int
    offset: int

    def ref(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"


@dataclass
class _Issue:
    issue_id: str
    facts: dict[str, Any] = field(default_factory=dict)   # key, project_key, summary, status, security_level, url
    facts_at_ms: int = -1
    incident: dict[str, Any] | None = None
    support: dict[str, Any] | None = None
    sales: dict[str, Any] | None = None
    timeline: deque = field(default_factory=deque)
    #: vendor → target (Slack channel, PagerDuty service) → the action key its results carry
    targets: dict[str, dict[str, str]] = field(default_factory=dict)


def _get(d: Any, *path: str) -> Any:
    for p in path:
        if not isinstance(d, dict):
            return None
        d = d.get(p)
    return d


class ReadModel:
    """In-memory views over the hub's topics. Feed with :meth:`apply`; query with the rest."""

    def __init__(self, *, restricted_projects: Iterable[str] = (), revenue: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
                 timeline_size: int = 200, deadletter_size: int = 1000) -> None:
        self.restricted_projects = frozenset(restricted_projects)
        self._revenue = revenue
        self.timeline_size = timeline_size
        self.issues: dict[str, _Issue] = {}
        self.key_to_id: dict[str, str] = {}
        self.ticket_issues: dict[str, set[str]] = defaultdict(set)
        self.deadletters: deque = deque(maxlen=deadletter_size)
        self.replayed: dict[str, int] = {}
        # lineage indexes, bounded by the topics' retention (and memory: entries are small)
        self.events: dict[str, dict[str, Any]] = {}             # event_id → the canonical event's summary
        self.inbound: dict[tuple[str, str, int], dict[str, Any]] = {}  # (source, key, received_at_ms) → position
        self.inbound_by_delivery: dict[str, dict[str, Any]] = {}
        self.by_cause: dict[str, list[dict[str, Any]]] = defaultdict(list)  # event id → messages and actions
        self.results: dict[str, list[dict[str, Any]]] = defaultdict(list)   # action id → results
        self.latest_result: dict[tuple[str, str], dict[str, Any]] = {}      # (vendor, action key) → newest result
        self.records = 0

    # ------------------------------------------------------------------ feeding

    def apply(self, topic: str, partition: int, offset: int, key: Any, value: Any) -> None:
        """Apply one record. ``topic`` is a short name, or ``table:<name>`` for a changelog."""
        self.records += 1
        pos = Position(topic, partition, offset)
        if topic.startswith("table:"):
            self._apply_state(topic[6:], key, value)
            return
        if not isinstance(value, dict):
            return
        if topic.startswith("inbound."):
            source = topic.split(".", 1)[1]
            entry = {"topic": topic, "position": pos.ref(), "received_at_ms": value.get("received_at_ms"),
                     "delivery_id": value.get("delivery_id"), "event_type": value.get("event_type")}
            self.inbound[(source, str(key), int(value.get("received_at_ms") or 0))] = entry
            if value.get("delivery_id"):
                self.inbound_by_delivery[str(value["delivery_id"])] = entry
        elif topic.startswith("events."):
            self._apply_event(topic, pos, value)
        elif topic in MESSAGE_TOPICS:
            cause = value.get("cause_event_id")
            if cause:
                self._by_cause(cause, {"topic": topic, "position": pos.ref(), "key": str(key), "op": value.get("op"),
                                       "at_ms": value.get("at_ms"), "processor": PRODUCER.get(topic)})
        elif topic in ACTION_TOPICS:
            self._apply_action(topic, pos, key, value)
        elif topic == "actions.results":
            self._apply_result(pos, value)
        elif topic == "deadletter":
            self.deadletters.append({"id": f"{partition}-{offset}", "partition": partition, "offset": offset, **{
                k: value.get(k) for k in ("stage", "source_topic", "key", "reason", "error_code", "at_ms")}, "value": value.get("value")})

    def _by_cause(self, cause: str, item: dict[str, Any]) -> None:
        items = self.by_cause[cause]
        if len(items) < MAX_TRACE_ITEMS:
            items.append(item)

    def _issue(self, issue_id: str) -> _Issue:
        iss = self.issues.get(issue_id)
        if iss is None:
            iss = self.issues[issue_id] = _Issue(issue_id, timeline=deque(maxlen=self.timeline_size))
        return iss

    def _facts(self, issue_id: str, facts: dict[str, Any] | None, at_ms: int) -> None:
        if not isinstance(facts, dict):
            return
        iss = self._issue(issue_id)
        if at_ms >= iss.facts_at_ms:
            for k in FACT_KEYS:
                if k in facts and (facts[k] not in (None, "", []) or k == "security_level"):
                    iss.facts[k] = facts[k]
            iss.facts_at_ms = at_ms
        if facts.get("key"):
            self.key_to_id[str(facts["key"])] = issue_id

    def _apply_state(self, table: str, key: Any, value: Any) -> None:
        issue_id = str(key)
        if table == "incidents":
            if value is None:
                self._issue(issue_id).incident = None
                return
            self._issue(issue_id).incident = value
            self._facts(issue_id, value.get("issue"), int(value.get("last_occurred_ms") or 0))
        elif table == "support-issues":
            iss = self._issue(issue_id)
            old = set((iss.support or {}).get("tickets") or {})
            iss.support = value
            new = set((value or {}).get("tickets") or {})
            for tid in old - new:
                self.ticket_issues[tid].discard(issue_id)
            for tid in new:
                self.ticket_issues[tid].add(issue_id)
            if value:
                self._facts(issue_id, value.get("issue"), int(value.get("last_occurred_ms") or 0))
        elif table == "sales-issues":
            iss = self._issue(issue_id)
            iss.sales = value
            if value:
                self._facts(issue_id, value.get("issue"), int(value.get("last_occurred_ms") or 0))

    def _apply_event(self, topic: str, pos: Position, value: dict[str, Any]) -> None:
        event_id = value.get("event_id")
        if not event_id:
            return
        source = topic.split(".", 1)[1]
        entry = {"event_id": event_id, "topic": topic, "position": pos.ref(), "kind": value.get("kind"),
                 "occurred_at_ms": value.get("occurred_at_ms"), "received_at_ms": value.get("received_at_ms"),
                 "source": value.get("source")}
        if source == "tracker":
            issue = value.get("issue") or {}
            issue_id = str(issue.get("id"))
            entry.update(issue_id=issue_id, key=issue.get("key"),
                         changes=[{"field": c.get("field"), "from": c.get("from"), "to": c.get("to")} for c in value.get("changes") or []])
            self._facts(issue_id, issue if not issue.get("partial") else {k: v for k, v in issue.items() if v not in (None, [], "")},
                        int(value.get("occurred_at_ms") or 0))
            self._issue(issue_id).timeline.append({"at_ms": value.get("occurred_at_ms"), "type": "event", "event_id": event_id,
                                                   "topic": topic, "kind": value.get("kind"), "changes": entry["changes"]})
            entry["inbound_key"] = issue_id
        elif source == "support":
            ticket = value.get("ticket") or {}
            entry.update(ticket_id=str(ticket.get("id")), inbound_key=str(ticket.get("id")))
            for issue_id in self.ticket_issues.get(str(ticket.get("id")), ()):
                self._issue(issue_id).timeline.append({"at_ms": value.get("occurred_at_ms"), "type": "event", "event_id": event_id,
                                                       "topic": topic, "kind": value.get("kind"), "ticket_id": entry["ticket_id"]})
        else:
            entry.update(record_id=value.get("record_id"), object=value.get("object"), inbound_key=str(value.get("record_id") or value.get("sobject")))
        self.events[event_id] = entry

    def _action_issue(self, topic: str, value: dict[str, Any]) -> list[str]:
        if topic in ("actions.pagerduty", "actions.slack"):
            iid = _get(value, "cause", "issue_id")
            return [str(iid)] if iid else []
        if topic == "actions.jira":
            return [str(value["issue_id"])] if value.get("issue_id") else []
        if topic == "actions.zendesk":
            return sorted(self.ticket_issues.get(str(value.get("ticket_id")), ()))
        return []

    def _apply_action(self, topic: str, pos: Position, key: Any, value: dict[str, Any]) -> None:
        cause = _get(value, "cause", "event_id")
        item = {"topic": topic, "position": pos.ref(), "key": str(key), "action_id": value.get("action_id"),
                "version": value.get("version"), "at_ms": value.get("created_at_ms"), "attempt": value.get("attempt"),
                "processor": PRODUCER.get(topic)}
        if cause:
            self._by_cause(cause, item)
        for iid in self._action_issue(topic, value):
            if topic == "actions.slack" and value.get("channel"):
                self._issue(iid).targets.setdefault("slack", {})[value["channel"]] = str(key)
            elif topic == "actions.pagerduty" and value.get("service"):
                self._issue(iid).targets.setdefault("pagerduty", {})[value["service"]] = str(key)
            self._issue(iid).timeline.append({"at_ms": value.get("created_at_ms"), "type": "action", "topic": topic,
                                              "action_id": value.get("action_id"), "version": value.get("version"), "event_id": cause})

    def _apply_result(self, pos: Position, value: dict[str, Any]) -> None:
        action_id = value.get("action_id") or ""
        result = {"position": pos.ref(), **{k: value.get(k) for k in ("vendor", "key", "version", "outcome", "detail", "calls", "vendor_ref",
                                                                           "error_code", "attempt", "at_ms", "cause_event_id")}}
        items = self.results[action_id]
        if len(items) < 50:
            items.append(result)
        k = (str(value.get("vendor")), str(value.get("key")))
        prev = self.latest_result.get(k)
        if prev is None or (value.get("at_ms") or 0) >= (prev.get("at_ms") or 0):
            self.latest_result[k] = result

    # ------------------------------------------------------------------ queries

    def resolve(self, ref: str) -> str | None:
        """An issue id from an id or a key (old keys of moved issues keep working)."""
        if ref in self.issues:
            return ref
        return self.key_to_id.get(ref) or self.key_to_id.get(ref.upper())

    def restricted(self, iss: _Issue) -> bool:
        f = iss.facts
        project = f.get("project_key")
        sticky = bool((iss.incident or {}).get("restricted"))
        return sticky or not project or project in self.restricted_projects or bool(f.get("security_level"))

    def _hidden(self, iss: _Issue, viewer: Viewer) -> bool:
        return self.restricted(iss) and not viewer.may_see(iss.facts.get("project_key"))

    def _head(self, iss: _Issue, viewer: Viewer) -> dict[str, Any]:
        hidden = self._hidden(iss, viewer)
        f = iss.facts
        return {"issue_id": iss.issue_id, "key": f.get("key"), "project": f.get("project_key"), "status": f.get("status"),
                "summary": None if hidden else f.get("summary"), "url": f.get("url"),
                "restricted": self.restricted(iss), "redacted": hidden}

    def _tickets(self, iss: _Issue, hidden: bool) -> list[dict[str, Any]]:
        out = []
        for tid, t in sorted(((iss.support or {}).get("tickets") or {}).items(), key=lambda kv: (len(kv[0]), kv[0])):
            tk = t.get("ticket") or {}
            out.append({"id": str(tid), "subject": None if hidden else tk.get("subject"), "status": tk.get("status"),
                        "organization": tk.get("organization_name") or (f"organization {tk['organization_id']}" if tk.get("organization_id") else None),
                        "url": tk.get("url"), "routes": list(t.get("routes") or [])})
        return out

    def _revenue_of(self, iss: _Issue) -> dict[str, Any] | None:
        opps = (iss.sales or {}).get("opps") or {}
        if not iss.sales or self._revenue is None:
            return None
        return self._revenue(opps)

    def _incident(self, iss: _Issue, hidden: bool) -> dict[str, Any] | None:
        inc = iss.incident
        if not inc:
            return None
        refs: dict[str, list[dict[str, Any]]] = {}
        for vendor, targets_key in (("slack", "slack_channels"), ("pagerduty", "pagerduty_services")):
            refs[vendor] = []
            for target in inc.get(targets_key) or []:
                action_key = iss.targets.get(vendor, {}).get(target)
                last = self.latest_result.get((vendor, action_key)) if action_key else None
                refs[vendor].append({"target": target, "outcome": (last or {}).get("outcome"),
                                     "vendor_ref": (last or {}).get("vendor_ref"), "at_ms": (last or {}).get("at_ms")})
        slack, pagerduty = refs["slack"], refs["pagerduty"]
        transitions = [{"at_ms": t.get("at_ms"), "from": t.get("from"), "to": t.get("to"),
                        "actor": None if hidden else t.get("actor")} for t in inc.get("transitions") or []]
        return {"state": inc.get("state"), "lifecycle": inc.get("lifecycle"), "version": inc.get("version"),
                "deleted": bool(inc.get("deleted")), "slack": slack, "pagerduty": pagerduty, "transitions": transitions}

    def issue(self, ref: str, viewer: Viewer) -> dict[str, Any] | None:
        issue_id = self.resolve(ref)
        if issue_id is None:
            return None
        iss = self.issues[issue_id]
        hidden = self._hidden(iss, viewer)
        doc = self._head(iss, viewer)
        tickets = self._tickets(iss, hidden)
        orgs = sorted({t["organization"] for t in tickets if t["organization"]})
        revenue = self._revenue_of(iss)
        frs = [{"id": fid, "routes": list(f.get("routes") or [])} for fid, f in sorted(((iss.sales or {}).get("frs") or {}).items())]
        timeline = []
        for entry in sorted(iss.timeline, key=lambda e: e.get("at_ms") or 0):
            e = dict(entry)
            if hidden and e.get("changes"):
                e["changes"] = [c if c["field"] and c["field"].lower() in ("status", "priority", "resolution") else
                                {"field": c["field"], "from": None, "to": None} for c in e["changes"]]
            for r in self.results.get(e.get("action_id") or "", []) if e["type"] == "action" else []:
                e.setdefault("results", []).append({k: r.get(k) for k in ("outcome", "detail", "vendor_ref", "attempt", "at_ms", "error_code")})
            timeline.append(e)
        doc.update(tickets=tickets, ticket_count=len(tickets), organizations=orgs, organization_count=len(orgs),
                   feature_requests=frs, revenue=revenue, incident=self._incident(iss, hidden), timeline=timeline)
        return doc

    def ranked(self, by: str, viewer: Viewer, limit: int = 50, currency: str | None = None) -> list[dict[str, Any]]:
        """Issues by revenue at stake (``revenue``: the converted total, else the named or largest
        currency's total) or by customer tickets (``tickets``), largest first."""
        rows = []
        for iss in self.issues.values():
            head = self._head(iss, viewer)
            tickets = len(((iss.support or {}).get("tickets") or {}))
            rev = self._revenue_of(iss) if iss.sales else None
            amount, cur, weighted = 0.0, None, 0.0
            if rev:
                if rev.get("converted") and currency in (None, rev["converted"]["currency"]):
                    amount, cur, weighted = rev["converted"]["amount"], rev["converted"]["currency"], rev["converted"]["weighted"]
                elif rev.get("totals"):
                    totals = rev["totals"]
                    pick = currency if currency in totals else (None if currency else max(totals, key=lambda c: totals[c]["amount"]))
                    if pick:
                        amount, cur, weighted = totals[pick]["amount"], pick, totals[pick]["weighted"]
            if by == "revenue" and amount <= 0:
                continue
            if by == "tickets" and tickets == 0:
                continue
            head.update(ticket_count=tickets, revenue_amount=amount, revenue_weighted=weighted, revenue_currency=cur,
                        open_opportunities=(rev or {}).get("open_count", 0))
            rows.append(head)
        if by == "revenue":
            rows.sort(key=lambda r: (-r["revenue_amount"], -r["ticket_count"], r["key"] or r["issue_id"]))
        else:
            rows.sort(key=lambda r: (-r["ticket_count"], -r["revenue_amount"], r["key"] or r["issue_id"]))
        return rows[:limit]

    def deadletter_list(self, viewer: Viewer) -> list[dict[str, Any]]:
        """Newest first; the dead record itself only for viewers who may see every project."""
        out = []
        for d in reversed(self.deadletters):
            item = {k: v for k, v in d.items() if k != "value"}
            item["replayable"] = d.get("value") is not None and not str(d.get("stage") or "").startswith("receiver.")
            item["replayed"] = self.replayed.get(d["id"], 0)
            if "*" in viewer.restricted_projects:
                item["value"] = d.get("value")
            out.append(item)
        return out

    def deadletter(self, dl_id: str) -> dict[str, Any] | None:
        return next((d for d in self.deadletters if d["id"] == dl_id), None)

    def trace(self, event_id: str, viewer: Viewer) -> dict[str, Any] | None:
        """webhook received → topics → processors → actions → vendor responses, for one event id."""
        event = self.events.get(event_id)
        inbound = self.inbound_by_delivery.get(event_id)
        if event is None and inbound is None and event_id not in self.by_cause:
            return None
        if event is not None and inbound is None:
            source = event["topic"].split(".", 1)[1]
            inbound_source = {"tracker": "jira", "support": "zendesk", "sales": "salesforce"}[source]
            inbound = self.inbound.get((inbound_source, str(event.get("inbound_key")), int(event.get("received_at_ms") or 0)))
        hops: list[dict[str, Any]] = []
        if inbound:
            hops.append({"stage": "received", "topic": inbound["topic"], "position": inbound["position"], "at_ms": inbound["received_at_ms"],
                         "detail": f"delivery {inbound['delivery_id'] or '(no id)'} · {inbound['event_type'] or ''}".strip(" ·"),
                         "processor": PRODUCER.get(inbound["topic"])})
        if event:
            hops.append({"stage": "normalized", "topic": event["topic"], "position": event["position"], "at_ms": event["received_at_ms"],
                         "detail": f"{event.get('kind')} {event.get('key') or event.get('ticket_id') or event.get('record_id') or ''}".strip(),
                         "processor": PRODUCER.get(event["topic"])})
        issue_ids = set()
        for item in self.by_cause.get(event_id, []):
            if item.get("action_id"):
                hops.append({"stage": "action", "topic": item["topic"], "position": item["position"], "at_ms": item["at_ms"],
                             "detail": f"{item['action_id']} (v{item['version']}, attempt {item.get('attempt') or 0})",
                             "processor": item["processor"], "action_id": item["action_id"]})
                for r in self.results.get(item["action_id"], []):
                    hops.append({"stage": "vendor", "topic": "actions.results", "position": r["position"], "at_ms": r["at_ms"],
                                 "detail": f"{r['vendor']}: {r['outcome']}" + (f" — {r['detail']}" if r.get("detail") else ""),
                                 "outcome": r["outcome"], "vendor_ref": r.get("vendor_ref"), "calls": r.get("calls") or [],
                                 "action_id": item["action_id"], "processor": f"deliver-{r['vendor']}"})
            else:
                hops.append({"stage": "processed", "topic": item["topic"], "position": item["position"], "at_ms": item["at_ms"],
                             "detail": f"{item['op']} → key {item['key']}", "processor": item["processor"]})
        if event and event.get("issue_id"):
            issue_ids.add(event["issue_id"])
        hidden = any(self._hidden(self.issues[i], viewer) for i in issue_ids if i in self.issues)
        return {"event_id": event_id, "issue_ids": sorted(issue_ids), "redacted": hidden,
                "hops": hops}

    def stats(self) -> dict[str, Any]:
        return {"records": self.records, "issues": len(self.issues), "deadletters": len(self.deadletters),
                "events": len(self.events)}
