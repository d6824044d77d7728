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


def _digest(value: Any) -> str:
    return hashlib.sha1(repr(sorted(value.items()) if isinstance(value, dict) else value).encode()).hexdigest()[:16]


class JiraConverger:
    vendor = "jira"

    def __init__(self, client: Any | None, *, ticket_count_field: str | None = None, organization_count_field: str | None = None,
                 dry_run: bool = False) -> None:
        self.client = client
        self.ticket_count_field = ticket_count_field
        self.organization_count_field = organization_count_field
        self.dry_run = dry_run or client is None

    async def converge(self, action: dict[str, Any], state: KeyState) -> Outcome:
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
