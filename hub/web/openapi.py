"""The OpenAPI 3 document of the read API (served at ``/api/v1/openapi.json``).

Written by hand, next to the handlers in :mod:`hub.web.server`, and checked against them by
schemathesis (tests/integration/test_web_api.py): every documented status and body shape is what
the server answers, for any input the document allows.
"""

from __future__ import annotations

from typing import Any


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


STR = {"type": "string"}
INT = {"type": "integer"}
NUM = {"type": "number"}
BOOL = {"type": "boolean"}
NSTR = _nullable(STR)
NINT = _nullable(INT)
NNUM = _nullable(NUM)
ANY_OBJECT = {"type": "object", "additionalProperties": True}


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required if required is not None else list(props), "additionalProperties": True}


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


ISSUE_HEAD = {
    "issue_id": STR, "key": NSTR, "project": NSTR, "status": NSTR,
    "summary": {**NSTR, "description": "null when the issue is restricted and the viewer has no access to its project"},
    "url": NSTR, "restricted": BOOL, "redacted": BOOL,
}

SCHEMAS: dict[str, Any] = {
    "Error": _obj({"error": STR}),
    "Ticket": _obj({"id": STR, "subject": NSTR, "status": NSTR, "organization": NSTR, "url": NSTR, "routes": {"type": "array", "items": STR}}),
    "Total": _obj({"count": INT, "amount": NUM, "weighted": NUM}),
    "Revenue": _nullable(_obj({
        "open_count": INT,
        "totals": {"type": "object", "additionalProperties": _ref("Total"), "description": "one total per currency"},
        "converted": _nullable(_obj({"currency": STR, "amount": NUM, "weighted": NUM})),
        "accounts": {"type": "array", "items": STR},
        "earliest_close_date": NSTR,
        "opportunities": {"type": "array", "items": _obj({"id": STR, "name": NSTR, "account": NSTR, "stage": NSTR, "amount": NUM,
                                                            "currency": STR, "close_date": NSTR})},
    }, ["open_count", "totals", "converted", "opportunities"])),
    "VendorRef": _obj({"target": STR, "outcome": NSTR, "vendor_ref": NSTR, "at_ms": NINT}),
    "Incident": _nullable(_obj({
        "state": NSTR, "lifecycle": NINT, "version": NINT, "deleted": BOOL,
        "slack": {"type": "array", "items": _ref("VendorRef")},
        "pagerduty": {"type": "array", "items": _ref("VendorRef")},
        "transitions": {"type": "array", "items": ANY_OBJECT},
    })),
    "TimelineEntry": _obj({"at_ms": NINT, "type": {"type": "string", "enum": ["event", "action"]}, "topic": STR, "event_id": NSTR},
                          ["type", "topic"]),
    "Issue": _obj({
        **ISSUE_HEAD,
        "tickets": {"type": "array", "items": _ref("Ticket")}, "ticket_count": INT,
        "organizations": {"type": "array", "items": STR}, "organization_count": INT,
        "feature_requests": {"type": "array", "items": _obj({"id": STR, "routes": {"type": "array", "items": STR}})},
        "revenue": _ref("Revenue"), "incident": _ref("Incident"),
        "timeline": {"type": "array", "items": _ref("TimelineEntry")},
    }),
    "RankedIssue": _obj({**ISSUE_HEAD, "ticket_count": INT, "revenue_amount": NUM, "revenue_weighted": NUM,
                         "revenue_currency": NSTR, "open_opportunities": INT}),
    "Ranked": _obj({"by": {"type": "string", "enum": ["revenue", "tickets"]}, "items": {"type": "array", "items": _ref("RankedIssue")}}),
    "DeadLetter": _obj({"id": STR, "partition": INT, "offset": INT, "stage": NSTR, "source_topic": NSTR, "key": NSTR,
                        "reason": NSTR, "error_code": NSTR, "at_ms": NINT, "replayable": BOOL, "replayed": INT},
                       ["id", "partition", "offset", "stage", "reason", "replayable", "replayed"]),
    "DeadLetters": _obj({"items": {"type": "array", "items": _ref("DeadLetter")}}),
    "Replayed": _obj({"status": {"type": "string", "enum": ["replayed"]}, "id": STR, "topic": STR}),
    "Hop": _obj({"stage": {"type": "string", "enum": ["received", "normalized", "processed", "action", "vendor"]},
                 "topic": STR, "position": STR, "at_ms": NINT, "detail": STR, "processor": NSTR}, ["stage", "topic", "position", "detail"]),
    "Trace": _obj({"event_id": STR, "issue_ids": {"type": "array", "items": STR}, "redacted": BOOL, "hops": {"type": "array", "items": _ref("Hop")}}),
    "Status": _obj({"caught_up": BOOL, "stalled_partitions": {"type": "array", "items": STR}, "records": INT, "issues": INT,
                    "deadletters": INT, "events": INT, "viewer": STR}),
}


def _responses(ok: dict[str, Any], *extra: int) -> dict[str, Any]:
    out = {"200": {"description": "OK", "content": {"application/json": {"schema": ok}}},
           "401": {"description": "missing or wrong credentials", "content": {"application/json": {"schema": _ref("Error")}}}}
    texts = {400: "invalid parameter", 403: "not allowed for this viewer", 404: "not found", 409: "cannot be done", 503: "Kafka unavailable"}
    for status in extra:
        out[str(status)] = {"description": texts[status], "content": {"application/json": {"schema": _ref("Error")}}}
    return out


def document(server_url: str | None = None) -> dict[str, Any]:
    path_ref = {"name": "ref", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 200},
                "description": "a Jira issue id (10001) or key (OPS-1; old keys of moved issues work)"}
    doc: dict[str, Any] = {
        "openapi": "3.0.3",
        "info": {"title": "Switchboard read API", "version": "1.0.0",
                 "description": "What the hub knows and did, per Jira issue: linked tickets, revenue at stake, incident state, "
                                "the events and effects behind them; ranked lists; dead letters and their replay; the lineage "
                                "of one event. Restricted issues come without their summary for viewers without access."},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, "basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{"bearer": []}, {"basic": []}],
        "paths": {
            "/api/v1/issues/{ref}": {"get": {"operationId": "getIssue", "summary": "One Jira issue: tickets, revenue, incident, timeline",
                                             "parameters": [path_ref], "responses": _responses(_ref("Issue"), 404)}},
            "/api/v1/ranked": {"get": {
                "operationId": "getRanked", "summary": "Issues by revenue at stake or by number of customer tickets, largest first",
                "parameters": [
                    {"name": "by", "in": "query", "schema": {"type": "string", "enum": ["revenue", "tickets"], "default": "revenue"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50}},
                    {"name": "currency", "in": "query", "schema": {"type": "string", "pattern": "^[A-Z]{3}$"},
                     "description": "rank by this currency's total (default: the converted total, else each issue's largest)"},
                ],
                "responses": _responses(_ref("Ranked"), 400)}},
            "/api/v1/deadletters": {"get": {"operationId": "getDeadLetters", "summary": "Dead letters, newest first, with their reasons",
                                            "responses": _responses(_ref("DeadLetters"))}},
            "/api/v1/deadletters/{id}/replay": {"post": {
                "operationId": "replayDeadLetter", "summary": "Put one dead letter back on its source topic (admins, bearer token)",
                "parameters": [{"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^[0-9]+-[0-9]+$"},
                                "description": "<partition>-<offset> on the deadletter topic"}],
                "responses": _responses(_ref("Replayed"), 403, 404, 409, 503)}},
            "/api/v1/trace/{event_id}": {"get": {
                "operationId": "traceEvent", "summary": "webhook received → topics → processors → actions → vendor responses",
                "parameters": [{"name": "event_id", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1, "maxLength": 300}}],
                "responses": _responses(_ref("Trace"), 404)}},
            "/api/v1/status": {"get": {"operationId": "getStatus", "summary": "Whether the view has caught up, and its size",
                                       "responses": _responses(_ref("Status"))}},
        },
    }
    if server_url:
        doc["servers"] = [{"url": server_url}]
    return doc
