"""Converge one Salesforce record to the newest desired snapshot (``actions.salesforce``).

Ledger row: ``{"version", "applied": digest of fields, "tasks": {task id: Salesforce id}, "pending"}``.
Field updates are PATCHes of values (idempotent). A Task is a create, which Salesforce would make
twice: before each one the converger writes a pending marker and waits until it is durable; a marker
found on the next attempt means "maybe created", and Tasks on the record are searched for the
task's ``[ref …]`` (in its Description) before creating it again. So each owner is told once.
"""

from __future__ import annotations

import hashlib
from typing import Any

from hub.delivery.pipeline import KeyState, Outcome


def _digest(fields: dict[str, Any]) -> str:
    return hashlib.sha1(repr(sorted(fields.items())).encode()).hexdigest()[:16]


def _soql_string(value: str) -> str:
    """A SOQL string literal (backslash and quote escaped, as the SOQL reference says)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SalesforceConverger:
    vendor = "salesforce"

    def __init__(self, client: Any | None, *, dry_run: bool = False) -> None:
        self.client = client
        self.dry_run = dry_run or client is None

    async def _find_task(self, what_id: str, task_id: str) -> str | None:
        soql = f"SELECT Id, Description FROM Task WHERE WhatId = {_soql_string(what_id)}"
        async for page in self.client.query(soql):
            for row in page:
                if f"[ref {task_id}]" in (row.get("Description") or ""):
                    return row["Id"]
        return None

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
            return Outcome("dry_run", detail=f"would update {target['sobject']} {target['id']} and create {len(todo)} Task(s)")
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
            body = {"Subject": task["subject"], "Description": task.get("description") or "", "WhatId": what_id,
                    "Status": task.get("status") or "Not Started", "Priority": task.get("priority") or "Normal"}
            if task.get("owner_id"):
                body["OwnerId"] = task["owner_id"]
            new_id = await self.client.create("Task", body)
            calls.append("Task.create")
            row["tasks"][task["id"]] = new_id
            row["pending"] = None
            state.put(row)
        row["version"] = max(version, row["version"])
        state.put(row)
        return Outcome("sent", detail=f"{target['sobject']} {target['id']} v{version}", calls=calls, vendor_ref=target["id"])
