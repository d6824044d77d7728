"""Converge one Jira issue's support view to the newest desired snapshot (``actions.jira``).

Ledger row: ``{"version", "links": {ticket id: digest}, "counts": [...]}`` — what Jira shows.
Every call is idempotent (remote links are upserted by ``globalId`` and deleted by it; fields and
properties are set to a value), so no call needs a pending marker: a crash repeats at most a write
of the same value.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hub.delivery.pipeline import KeyState, Outcome

PROPERTY_KEY = "switchboard.support"
REVENUE_PROPERTY_KEY = "switchboard.revenue"


def _digest(value: Any) -> str:
    return hashlib.sha1(repr(sorted(value.items()) if isinstance(value, dict) else value).encode()).hexdigest()[:16]


class JiraConverger:
    vendor = "jira"

    def __init__(self, client: Any | None, *, ticket_count_field: str | None = None, organization_count_field: str | None = None,
                 revenue_fields: dict[str, str | None] | None = None, dry_run: bool = False) -> None:
        self.client = client
        #: "amount", "weighted", "count", "close_date" → Jira field id (None: the issue property)
        self.revenue_fields = {k: v for k, v in (revenue_fields or {}).items() if v}
        self.ticket_count_field = ticket_count_field
        self.organization_count_field = organization_count_field
        self.dry_run = dry_run or client is None

    async def converge(self, action: dict[str, Any], state: KeyState) -> Outcome:
        if action.get("schema") == "switchboard.action.jira_revenue/1":
            return await self._converge_revenue(action, state)
        row = dict(state.get() or {"version": 0, "links": {}, "counts": None})
        row["links"] = dict(row["links"])
        version = int(action["version"])
        if version <= row["version"]:
            return Outcome("skipped", detail=f"Jira already at v{row['version']}")
        issue_id = action["issue_id"]
        wanted = {tid: _digest(link) for tid, link in action["links"].items()}
        upserts = [tid for tid, d in wanted.items() if row["links"].get(tid) != d]
        deletes = [tid for tid in row["links"] if tid not in wanted]
        counts = [action["ticket_count"], action["organization_count"], list(action.get("organizations") or [])]
        if self.dry_run:
            return Outcome("dry_run", detail=f"would upsert {len(upserts)} links, delete {len(deletes)}, counts {counts[:2]}")
        calls: list[str] = []
        for tid in upserts:
            link = action["links"][tid]
            # Jira's remote-link status is "resolved or not" (it strikes the link through)
            await self.client.upsert_remote_link(issue_id, global_id=link["global_id"], url=link["url"], title=link["title"],
                                                 status=link.get("status") in ("solved", "closed"))
            row["links"][tid] = wanted[tid]
            state.put(row)
            calls.append("remotelink.upsert")
        for tid in deletes:
            await self.client.delete_remote_link(issue_id, f"switchboard:zendesk:ticket:{tid}")
            del row["links"][tid]
            state.put(row)
            calls.append("remotelink.delete")
        if row["counts"] != counts:
            if self.ticket_count_field or self.organization_count_field:
                fields = {}
                if self.ticket_count_field:
                    fields[self.ticket_count_field] = counts[0]
                if self.organization_count_field:
                    fields[self.organization_count_field] = counts[1]
                await self.client.update_fields(issue_id, fields)
                calls.append("issue.fields")
            else:
                await self.client.set_property(issue_id, PROPERTY_KEY, {"tickets": counts[0], "organizations": counts[1], "organization_names": counts[2]})
                calls.append("issue.property")
            row["counts"] = counts
        row["version"] = version
        state.put(row)
        if not calls:
            return Outcome("skipped", detail="nothing changed in Jira")
        return Outcome("sent", detail=f"{issue_id} v{version}", calls=calls, vendor_ref=issue_id)

    async def _converge_revenue(self, action: dict[str, Any], state: KeyState) -> Outcome:
        """The revenue view (its own ledger row, key ``revenue:<issue id>``): fields or the property."""
        row = dict(state.get() or {"version": 0, "digest": None})
        version = int(action["version"])
        if version <= row["version"]:
            return Outcome("skipped", detail=f"Jira revenue already at v{row['version']}")
        r = action["revenue"]
        digest = _digest(repr(r))
        if digest == row["digest"]:
            row["version"] = version
            state.put(row)
            return Outcome("skipped", detail="Jira already shows this revenue")
        if self.dry_run:
            return Outcome("dry_run", detail=f"would show {r.get('open_count')} open opportunities")
        issue_id = action["issue_id"]
        if self.revenue_fields:
            # number fields hold one amount: the converted total, or the only currency; never a blind sum
            totals = r.get("totals") or {}
            total = r.get("converted") or (next(iter(totals.values())) if len(totals) == 1 else None)
            values = {"amount": total and total.get("amount"), "weighted": total and total.get("weighted"),
                      "count": r.get("open_count"), "close_date": r.get("earliest_close_date")}
            await self.client.update_fields(issue_id, {field: values[name] for name, field in self.revenue_fields.items()})
            call = "issue.fields"
        else:
            await self.client.set_property(issue_id, REVENUE_PROPERTY_KEY, r)
            call = "issue.property"
        row.update(version=version, digest=digest)
        state.put(row)
        return Outcome("sent", detail=f"{issue_id} revenue v{version}", calls=[call], vendor_ref=issue_id)
