"""Converge one Salesforce record to the newest desired snapshot (``actions.salesforce``).

Ledger row: ``{"version", "applied": digest of fields, "tasks": {task id: Salesforce id}, "pending"}``.
Field updates are PATCHes of values (idempotent). Each owner notice (``tasks`` in the action) is
made, as configured, as a **Task** (``POST /sobjects/Task``) or as a **Chatter post** on the record's
feed mentioning the owner (``POST /chatter/feed-elements`` with ``feedElementType: FeedItem``,
https://developer.salesforce.com/docs/atlas.en-us.chatterapi.meta/chatterapi/connect_resources_feed_element_post_and_get.htm).
Both are creates, which Salesforce would make twice: before each one the converger writes a pending
marker and waits until it is durable; a marker found on the next attempt means "maybe created", and
the record's Tasks (their Description) or its feed (the post's text) are searched for the notice's
``[ref …]`` before creating it again. So each owner is told once.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hub.delivery.pipeline import KeyState, Outcome


#: how the owner of an opportunity is told: a Task assigned to them, or a Chatter post on the record
NOTICES = ("task", "chatter")
#: Chatter API: a feed item's body is at most 10,000 characters.
CHATTER_MAX_TEXT = 10_000


def chatter_segments(task: dict[str, Any]) -> list[dict[str, Any]]:
    """The message segments of a notice posted to the record's feed: the owner mentioned (so they
    are notified), then the subject and the description with its ``[ref …]``. Pure."""
    segments: list[dict[str, Any]] = []
    if task.get("owner_id"):
        segments += [{"type": "Mention", "id": task["owner_id"]}, {"type": "Text", "text": " "}]
    text = f"{task['subject']}\n{task.get('description') or ''}".strip()
    segments.append({"type": "Text", "text": text[:CHATTER_MAX_TEXT - 100]})
    return segments


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha1(repr(sorted(fields.items())).encode()).hexdigest()[:16]


def _soql_string(value: str) -> str:
    """A SOQL string literal (backslash and quote escaped, as the SOQL reference says)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforceConverger:
    vendor = "salesforce"

    def __init__(self, client: Any | None, *, dry_run: bool = False, notice: str = "task") -> None:
        if notice not in NOTICES:
            raise ValueError(f"notice must be one of {NOTICES}")
        self.client = client
        self.dry_run = dry_run or client is None
        self.notice = notice

    async def _find_task(self, what_id: str, task_id: str) -> str | None:
        if self.notice == "chatter":
            for element in await self.client.feed_elements(what_id):
                if f"[ref {task_id}]" in ((element.get("body") or {}).get("text") or ""):
                    return element["id"]
            return None
        soql = f"SELECT Id, Description FROM Task WHERE WhatId = {_soql_string(what_id)}"
        async for page in self.client.query(soql):
            for row in page:
                if f"[ref {task_id}]" in (row.get("Description") or ""):
                    return row["Id"]
        return None

    async def _create(self, task: dict[str, Any], what_id: str) -> str:
        if self.notice == "chatter":
            return await self.client.post_feed_item(what_id, chatter_segments(task))
        body = {"Subject": task["subject"], "Description": task.get("description") or "", "WhatId": what_id,
                "Status": task.get("status") or "Not Started", "Priority": task.get("priority") or "Normal"}
        if task.get("owner_id"):
            body["OwnerId"] = task["owner_id"]
        return await self.client.create("Task", body)

    async def converge(self, action: dict[str, Any], state: KeyState) -> Outcome:
        row = dict(state.get() or {"version": 0, "applied": None, "tasks": {}, "pending": None})
        row["tasks"] = dict(row["tasks"])
        version = int(action["version"])
        if version < row["version"]:
            return Outcome("skipped", detail=f"stale snapshot v{version} < v{row['version']}")
        target = action["target"]
        fields = action.get("fields") or {}
        digest = _digest(fields)
        todo = [t for t in action.get("tasks") or [] if t["id"] not in row["tasks"]]
        if (digest == row["applied"] or not fields) and not todo:
            row["version"] = max(version, row["version"])
            state.put(row)
            return Outcome("skipped", detail="Salesforce already shows this")
        if self.dry_run:
            return Outcome("dry_run", detail=f"would update {target['sobject']} {target['id']} and create {len(todo)} "
                                             f"{'Chatter post' if self.notice == 'chatter' else 'Task'}(s)")
        calls: list[str] = []
        if fields and digest != row["applied"]:
            await self.client.update(target["sobject"], target["id"], fields)
            calls.append(f"{target['sobject']}.update")
            row["applied"] = digest
            state.put(row)
        for task in todo:
            what_id = task.get("what_id") or target["id"]
            if row.get("pending") == task["id"]:
                found = await self._find_task(what_id, task["id"])
                calls.append("Task.query")
                if found:
                    row["tasks"][task["id"]] = found
                    row["pending"] = None
                    state.put(row)
                    continue
            row["pending"] = task["id"]
            state.put(row)
            await state.persist()
            new_id = await self._create(task, what_id)
            calls.append("Chatter.post" if self.notice == "chatter" else "Task.create")
            row["tasks"][task["id"]] = new_id
            row["pending"] = None
            state.put(row)
        row["version"] = max(version, row["version"])
        state.put(row)
        return Outcome("sent", detail=f"{target['sobject']} {target['id']} v{version}", calls=calls, vendor_ref=target["id"])
