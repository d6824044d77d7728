"""Converge one Zendesk ticket's Jira view to the newest desired snapshot (``actions.zendesk``).

Ledger row: ``{"version", "applied": digest of fields+tags, "notes": {note id: true}, "pending": id}``.
Fields and tags are set to values (idempotent). An internal note is a comment, which Zendesk would
add twice: before each note the converger writes a pending marker and waits until it is durable; a
marker found on the next attempt means "maybe added", and the ticket's comments are searched for the
note's ``[ref …]`` tag before adding it again. So a resolve puts each note on each ticket once.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hub.delivery.pipeline import KeyState, Outcome


def _digest(action: dict[str, Any]) -> str:
    return hashlib.sha1(repr((sorted(action["fields"].items()), action["tags_present"], action["tags_absent"])).encode()).hexdigest()[:16]


def note_ref(note_id: str) -> str:
    return f"[ref {note_id}]"


class ZendeskConverger:
    vendor = "zendesk"

    def __init__(self, client: Any | None, *, dry_run: bool = False) -> None:
        self.client = client
        self.dry_run = dry_run or client is None

    async def converge(self, action: dict[str, Any], state: KeyState) -> Outcome:
        row = dict(state.get() or {"version": 0, "applied": None, "notes": {}, "pending": None})
        row["notes"] = dict(row["notes"])
        version = int(action["version"])
        if version < row["version"]:
            return Outcome("skipped", detail=f"stale snapshot v{version} < v{row['version']}")
        tid = action["ticket_id"]
        digest = _digest(action)
        todo = [n for n in action["notes"] if n["id"] not in row["notes"]]
        if digest == row["applied"] and not todo:
            if version > row["version"]:
                row["version"] = version
                state.put(row)
            return Outcome("skipped", detail="ticket already shows this")
        if self.dry_run:
            return Outcome("dry_run", detail=f"would update ticket {tid} and add {len(todo)} note(s)")
        calls: list[str] = []
        fields = action["fields"] or None
        tags = {"add_tags": action["tags_present"] or None, "remove_tags": action["tags_absent"] or None}
        if row.get("pending") and any(n["id"] == row["pending"] for n in todo):
            comments = await self.client.list_comments(tid)
            calls.append("ticket.comments")
            bodies = " ".join(str(c.get("body") or "") for c in comments)
            for n in todo:
                if note_ref(n["id"]) in bodies:
                    row["notes"][n["id"]] = True
            row["pending"] = None
            state.put(row)
            todo = [n for n in todo if n["id"] not in row["notes"]]
        for note in todo:
            row["pending"] = note["id"]
            state.put(row)
            await state.persist()
            await self.client.update_ticket(tid, custom_fields=fields, internal_note=note["text"], **tags)
            calls.append("ticket.update+note")
            row["notes"][note["id"]] = True
            row["pending"] = None
            row["applied"] = digest
            state.put(row)
        if row["applied"] != digest:
            await self.client.update_ticket(tid, custom_fields=fields, internal_note=None, **tags)
            calls.append("ticket.update")
            row["applied"] = digest
        row["version"] = max(version, row["version"])
        state.put(row)
        return Outcome("sent", detail=f"ticket {tid} v{version}", calls=calls, vendor_ref=tid)
