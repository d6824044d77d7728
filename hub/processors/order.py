"""Which events and messages may still change a side's state (pure; shared by the processors).

A replay of a topic from offset 0 re-reads every record a side has already applied. Two rules keep
those records from rolling a state back:

- an **event** from a vendor applies only when it is not older than the newest one applied, and
  is not one of the events already applied at that same millisecond (:func:`fresh_event`,
  :func:`note_applied`);
- a **message** from another side carries that side's own counter (:func:`next_seq`) and applies
  only when it is newer than the last one applied from the same sender about the same thing
  (:func:`newer_word`).
"""

from __future__ import annotations

import time
from typing import Any

#: event ids remembered at the newest millisecond
MAX_SEEN = 50


def fresh_event(state: dict[str, Any] | None, occurred: int, event_id: str) -> bool:
    """Whether an event may change a record's state: not older than the newest one applied, and not
    one of the events already applied at that same millisecond (two changes can share a timestamp:
    a replay from offset 0 must not re-apply the older of them over the newer)."""
    if state is None or occurred > state["last_occurred_ms"]:
        return True
    return occurred == state["last_occurred_ms"] and event_id not in (state.get("last_event_ids") or [])


def note_applied(st: dict[str, Any], occurred: int, event_id: str) -> None:
    """Note an applied event (see :func:`fresh_event`); the ids kept are those of the newest millisecond."""
    same = (st.get("last_event_ids") or []) if occurred == st["last_occurred_ms"] else []
    st["last_occurred_ms"] = occurred
    st["last_event_ids"] = (same + [event_id])[-MAX_SEEN:]


def next_seq(st: dict[str, Any], now_ms: int | None = None) -> int:
    """A side's own number for its next message: the receiving side applies a word only when it is
    newer than the last one it applied from this sender (:func:`newer_word`), so a replay of a
    topic from offset 0 never brings back older facts.

    The number grows with the state (kept in it) and with the clock (``now_ms`` × 1,000, at least):
    a worker killed after sending but before storing its state re-runs from the older state, maybe
    in another order of its input topics, and its next words must still count as newer than the
    ones it sent before the kill (the restart takes seconds; the same number with other content
    would be ignored).
    """
    now = int(time.time() * 1000) if now_ms is None else now_ms
    st["seq"] = max(int(st.get("seq", 0)) + 1, now * 1000)
    return st["seq"]


def newer_word(seen: dict[str, int], sender: str, seq: Any) -> bool:
    """Whether a message numbered ``seq`` by ``sender`` is newer than the last one applied from it
    (and note it). Messages without a number (written before numbering) always apply."""
    if not isinstance(seq, int):
        return True
    applied = seen.get(sender)
    if applied is not None and seq <= applied:
        return False
    seen[sender] = seq
    return True
