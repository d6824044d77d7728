"""The command-line faces of the read model: ``switchboard top`` (reads the web view's API) and
``switchboard trace`` (reads the topics itself, so it works with no web view running)."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from typing import Any


class ApiError(Exception):
    pass


def fetch_json(url: str, token: str | None, timeout_s: float = 10.0) -> Any:
    req = urllib.request.Request(url, headers={"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error")
        except ValueError:
            message = exc.reason
        raise ApiError(f"{url}: {exc.code} {message}") from None
    except urllib.error.URLError as exc:
        raise ApiError(f"{url}: {exc.reason} (is `switchboard web` running?)") from None


def format_top(doc: dict[str, Any]) -> str:
    """The ranked list as a fixed-width table (the API's ``/api/v1/ranked`` document)."""
    rows = doc.get("items") or []
    if not rows:
        return f"no issues with {'revenue at stake' if doc.get('by') == 'revenue' else 'customer tickets'} yet"
    lines = [f"{'#':>3}  {'issue':<12} {'revenue at stake':>20} {'weighted':>16} {'opps':>5} {'tickets':>7}  summary"]
    for i, r in enumerate(rows, 1):
        cur = r.get("revenue_currency") or ""
        amount = f"{r['revenue_amount']:,.2f} {cur}" if cur else "-"
        weighted = f"{r['revenue_weighted']:,.2f}" if cur else "-"
        summary = "(restricted)" if r.get("redacted") else (r.get("summary") or "")
        lines.append(f"{i:>3}  {(r.get('key') or r['issue_id']):<12} {amount:>20} {weighted:>16} {r.get('open_opportunities', 0):>5} "
                     f"{r['ticket_count']:>7}  {summary[:60]}")
    return "\n".join(lines)


def _ts(ms: Any) -> str:
    if not ms:
        return " " * 23
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def format_trace(doc: dict[str, Any]) -> str:
    lines = [f"event {doc['event_id']}" + (f"  (issue {', '.join(doc['issue_ids'])})" if doc.get("issue_ids") else "")]
    for h in doc["hops"]:
        lines.append(f"  {_ts(h.get('at_ms'))}  {h['stage']:<10} {h['topic']:<22} {h['position']:<28} {h.get('processor') or '':<28} {h['detail']}")
    return "\n".join(lines)


async def trace(settings, event_id: str, timeout_s: float = 60.0) -> dict[str, Any] | None:
    """Read the topics up to now and return the lineage of ``event_id`` (the operator sees everything)."""
    from hub.web.feed import load_once
    from hub.web.model import Viewer
    from hub.web.server import build_model

    model = build_model(settings)
    await load_once(settings, model, timeout_s=timeout_s)
    return model.trace(event_id, Viewer(name="cli", restricted_projects=frozenset({"*"}), admin=True))


def ranked_url(base: str, by: str, limit: int, currency: str | None) -> str:
    query = {"by": by, "limit": str(limit), **({"currency": currency} if currency else {})}
    return f"{base.rstrip('/')}/api/v1/ranked?{urllib.parse.urlencode(query)}"
