"""The Salesforce fake over raw HTTP: OAuth, the REST subset, the SOQL subset, limits, Change Data
Capture and the control endpoints, with its answers checked against the captured samples in
../shared/contracts/salesforce (skipped when absent)."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

import schemas
from connectors.salesforce.events import cdc_envelope, is_id, to_18
from connectors.salesforce.mapping import to_sales_events
from sandbox import start_sandbox
from sandbox import salesforce as sf_fake
from sandbox.salesforce import SalesforceState, create_app, parse_soql

CID, SECRET, REFRESH = "3MVG9switchboard", "consumer-secret", "5Aep-refresh"
V = "/services/data/v62.0"
REST_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}\+0000$")
CDC_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
LIMIT_INFO = re.compile(r"^api-usage=\d+/\d+$")
SAMPLES = "salesforce/samples/"


@pytest.fixture
def state(clock):
    return SalesforceState(clients={CID: SECRET}, refresh_tokens={REFRESH: CID}, clock=clock, wall_clock=clock)


@pytest.fixture
async def client(serve, state):
    return await serve(create_app(state))


@pytest.fixture
async def auth(client):
    resp = await client.post("/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": CID,
                                                             "client_secret": SECRET})
    assert resp.status == 200
    return {"Authorization": f"Bearer {(await resp.json())['access_token']}"}


async def call(client, method, path, auth=None, body=None, headers=None, **kwargs):
    resp = await client.request(method, path, json=body, headers={**(auth or {}), **(headers or {})}, **kwargs)
    data = await resp.json() if resp.content_type == "application/json" else await resp.text()
    return resp, data


async def soql(client, auth, query, endpoint="query", headers=None):
    return await call(client, "GET", f"{V}/{endpoint}", auth, params={"q": query}, headers=headers)


def person(state, sobject, **fields):
    if sobject == "Opportunity":
        fields = {"StageName": "Prospecting", "CloseDate": "2025-06-30", **fields}
    return state.create(sobject, fields, user_id=state.person_user_id)


def same_shape(ours: dict[str, Any], sample: dict[str, Any]) -> list[str]:
    """Keys of the sample missing from ours, or typed differently (null matches anything)."""
    problems = [f"{k}: missing" for k in sample if k not in ours]
    for key, value in sample.items():
        if key in ours and value is not None and ours[key] is not None and type(ours[key]) is not type(value):
            problems.append(f"{key}: {type(ours[key]).__name__}, sample has {type(value).__name__}")
    return problems


# --- OAuth ---------------------------------------------------------------------------------------------


async def test_token_answers_like_the_sample(client, state, contract):
    resp, data = await call(client, "POST", "/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": CID, "client_secret": SECRET})
    sample = contract(SAMPLES + "oauth-token.200.json")
    assert resp.status == 200 and list(data) == list(sample) and same_shape(data, sample) == []
    assert data["instance_url"] == str(client.make_url("")).rstrip("/")
    assert data["id"] == f"https://login.salesforce.com/id/{state.org_id}/{state.api_user_id}"
    assert data["access_token"].startswith(state.org_id[:15] + "!") and data["token_type"] == "Bearer"
    [logged] = state.calls
    assert logged.body["client_secret"] == "****cret" and SECRET not in str(logged.to_json())


async def test_token_grants_and_refusals(client, contract):
    basic = base64.b64encode(f"{CID}:{SECRET}".encode()).decode()
    resp, _ = await call(client, "POST", "/services/oauth2/token", data={"grant_type": "client_credentials"},
                         headers={"Authorization": f"Basic {basic}"})
    assert resp.status == 200
    resp, data = await call(client, "POST", "/services/oauth2/token", data={
        "grant_type": "refresh_token", "client_id": CID, "refresh_token": REFRESH})
    assert resp.status == 200 and "refresh_token" not in data
    refused = [
        ({"grant_type": "password", "client_id": CID}, "unsupported_grant_type"),
        ({"grant_type": "client_credentials", "client_id": "someone-else", "client_secret": SECRET}, "invalid_client_id"),
        ({"grant_type": "client_credentials", "client_id": CID, "client_secret": "wrong"}, "invalid_grant"),
        ({"grant_type": "refresh_token", "client_id": CID, "refresh_token": "stolen"}, "invalid_grant"),
        ({"grant_type": "refresh_token", "client_id": CID, "client_secret": "wrong", "refresh_token": REFRESH},
         "invalid_client"),
    ]
    sample = contract(SAMPLES + "oauth-token.400-invalid-grant.json")
    for form, error in refused:
        resp, data = await call(client, "POST", "/services/oauth2/token", data=form)
        assert (resp.status, data["error"]) == (400, error) and set(data) == set(sample)
    resp, data = await call(client, "POST", "/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": CID, "client_secret": "wrong"})
    assert data == sample


async def test_any_client_is_accepted_without_configured_credentials(serve):
    client = await serve(create_app(SalesforceState()))
    resp, data = await call(client, "POST", "/services/oauth2/token", data={
        "grant_type": "client_credentials", "client_id": "x", "client_secret": "y"})
    assert resp.status == 200 and data["access_token"]


async def test_unknown_expired_and_revoked_tokens_are_401(client, auth, state, clock, contract):
    sample = contract(SAMPLES + "rest-error.401-invalid-session.json")
    assert (await call(client, "GET", f"{V}/limits", auth))[0].status == 200
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": auth["Authorization"].replace("Bearer", "Basic")}):
        resp, data = await call(client, "GET", f"{V}/limits", headers)
        assert (resp.status, data) == (401, sample) and LIMIT_INFO.match(resp.headers["Sforce-Limit-Info"])
    assert (await call(client, "GET", f"{V}/limits", {"Authorization": auth["Authorization"].replace("Bearer", "OAuth")}
                       ))[0].status == 200
    clock.advance(2 * 3600 + 1)
    assert await (await client.get(f"{V}/limits", headers=auth)).json() == sample
    resp = await client.post("/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": CID,
                                                             "client_secret": SECRET})
    fresh = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
    assert (await client.get(f"{V}/limits", headers=fresh)).status == 200
    assert await (await client.post("/_sandbox/tokens/expire")).json() == {"expired": 2}
    assert (await client.get(f"{V}/limits", headers=fresh)).status == 401


# --- limits -----------------------------------------------------------------------------------------------


async def test_every_answer_counts_and_carries_the_usage(client, auth):
    seen = []
    for path in (f"{V}/limits", f"{V}/limits/", f"{V}/sobjects/Account/001XX000003DHPmYAO", f"{V}/nope"):
        resp = await client.get(path, headers=auth)
        seen.append((resp.status, resp.headers["Sforce-Limit-Info"]))
    assert seen == [(200, "api-usage=1/100000"), (200, "api-usage=2/100000"), (404, "api-usage=3/100000"),
                    (404, "api-usage=4/100000")]
    _, data = await call(client, "GET", f"{V}/limits", auth)
    assert data == {"DailyApiRequests": {"Max": 100000, "Remaining": 100000 - 5}}


async def test_the_daily_allocation_answers_403_when_used_up(client, auth, state, clock, contract):
    sample = contract(SAMPLES + "rest-error.403-request-limit-exceeded.json")
    assert await (await client.post("/_sandbox/limits", json={"max": 10, "used": 9})).json() == {
        "max": 10, "used": 9, "enforced": True}
    assert (await client.get(f"{V}/limits", headers=auth)).status == 200
    resp, data = await call(client, "GET", f"{V}/limits", auth)
    assert (resp.status, data, resp.headers["Sforce-Limit-Info"]) == (403, sample, "api-usage=10/10")
    await client.post("/_sandbox/config", json={"rate_limits": False})  # the switch
    resp = await client.get(f"{V}/limits", headers=auth)
    assert resp.status == 200 and resp.headers["Sforce-Limit-Info"] == "api-usage=11/10"
    await client.post("/_sandbox/config", json={"rate_limits": True})
    clock.advance(24 * 3600 + 1)  # a rolling 24 hours
    resp = await client.post("/services/oauth2/token", data={"grant_type": "client_credentials", "client_id": CID,
                                                             "client_secret": SECRET})
    fresh = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
    assert (await client.get(f"{V}/limits", headers=fresh)).headers["Sforce-Limit-Info"] == "api-usage=1/10"
    assert (await client.post("/_sandbox/limits", json={"max": -1})).status == 400


# --- query -------------------------------------------------------------------------------------------------


async def test_query_pages_like_the_samples(client, auth, state, clock, contract):
    ids = []
    for n in range(450):
        clock.advance(0.001)
        ids.append(person(state, "Account", Name=f"Acme {n}").id)
    resp, first = await soql(client, auth, "SELECT Id, Name FROM Account ORDER BY Id", headers={
        "Sforce-Query-Options": "batchSize=50"})  # below the minimum: 200
    page1 = contract(SAMPLES + "rest-query.page1.json")
    assert list(first) == list(page1) and same_shape(first, page1) == []
    assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
    assert re.fullmatch(r"/services/data/v62\.0/query/01g[A-Za-z0-9]{15}-200", first["nextRecordsUrl"])
    assert is_id(first["nextRecordsUrl"].rsplit("/", 1)[1][:18])
    assert first["records"][0] == {"attributes": {"type": "Account", "url": f"{V}/sobjects/Account/{ids[0]}"},
                                   "Id": ids[0], "Name": "Acme 0"}
    assert same_shape(first["records"][0], page1["records"][0]) == []
    _, second = await call(client, "GET", first["nextRecordsUrl"], auth)
    _, last = await call(client, "GET", second["nextRecordsUrl"], auth)
    assert list(last) == list(contract(SAMPLES + "rest-query.last-page.json")) and last["done"] is True
    assert [r["Id"] for p in (first, second, last) for r in p["records"]] == ids
    resp, again = await call(client, "GET", second["nextRecordsUrl"], auth)  # a used-up locator
    assert (resp.status, again[0]["errorCode"]) == (400, "INVALID_QUERY_LOCATOR")
    _, empty = await soql(client, auth, "SELECT Id FROM Account WHERE Name = 'nobody'")
    assert empty == contract(SAMPLES + "rest-query.empty.json")


async def test_query_locators_expire_and_the_oldest_of_ten_is_released(client, auth, state, clock):
    for n in range(201):
        person(state, "Account", Name=f"a{n}")
    batch = {"Sforce-Query-Options": "batchSize=200"}
    urls = [(await soql(client, auth, "SELECT Id FROM Account", headers=batch))[1]["nextRecordsUrl"] for _ in range(11)]
    assert (await client.get(urls[0], headers=auth)).status == 400  # released
    assert (await client.get(urls[1], headers=auth)).status == 200
    clock.advance(15 * 60 + 1)
    assert (await client.get(urls[2], headers=auth)).status == 400  # idle for 15 minutes


async def test_relationships_filters_order_and_limit(client, auth, state, clock, contract):
    acme = person(state, "Account", Name="Acme")
    clock.advance(10)
    rows = [person(state, "Opportunity", Name="A", AccountId=acme.id, Amount=5.0),
            person(state, "Opportunity", Name="B", Amount=None), person(state, "Opportunity", Name="C", Amount=9.5)]
    for row in rows:
        clock.advance(1)
    _, data = await soql(client, auth, "SELECT Name, Account.Name FROM Opportunity WHERE Name = 'A'")
    sample = contract(SAMPLES + "rest-query.relationship.json")["records"][0]
    assert list(data["records"][0]) == ["attributes", "Name", "Account"]
    assert same_shape(data["records"][0]["Account"], sample["Account"]) == []
    _, data = await soql(client, auth, "SELECT Name, Account.Name FROM Opportunity WHERE Name = 'B'")
    assert data["records"][0]["Account"] is None
    _, data = await soql(client, auth, "select name from opportunity order by Amount desc nulls last, Name limit 2")
    assert [r["Name"] for r in data["records"]] == ["C", "A"]
    _, data = await soql(client, auth, "SELECT Name FROM Opportunity ORDER BY Amount")
    assert [r["Name"] for r in data["records"]] == ["B", "A", "C"]  # ASC: nulls first
    stamp = state.record("Opportunity", rows[1].id).values["SystemModstamp"]
    after = f"{datetime_literal(stamp - 1)}"
    _, data = await soql(client, auth, f"SELECT Id FROM Opportunity WHERE SystemModstamp > {after} AND Amount != null")
    assert [r["Id"] for r in data["records"]] == [rows[0].id, rows[2].id]
    _, data = await soql(client, auth, f"SELECT Id FROM Opportunity WHERE Id = '{rows[2].id[:15]}'")
    assert [r["Id"] for r in data["records"]] == [rows[2].id]
    offset = "2025-03-04T10:00:00+01:00"
    assert parse_soql(f"SELECT Id FROM Account WHERE SystemModstamp >= {offset}").where[0][2] == 1741078800000


def datetime_literal(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms // 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_query_all_shows_the_recycle_bin(client, auth, state, contract):
    kept, gone = person(state, "Account", Name="Kept"), person(state, "Account", Name="Deleted Co")
    state.delete("Account", gone.id, user_id=state.person_user_id)
    _, live = await soql(client, auth, "SELECT Id, Name, IsDeleted FROM Account")
    _, every = await soql(client, auth, "SELECT Id, Name, IsDeleted FROM Account", endpoint="queryAll/")
    assert [r["Id"] for r in live["records"]] == [kept.id]
    assert [(r["Id"], r["IsDeleted"]) for r in every["records"]] == [(kept.id, False), (gone.id, True)]
    sample = contract(SAMPLES + "rest-queryall.deleted-and-merged.json")["records"][0]
    assert same_shape(every["records"][1], {k: v for k, v in sample.items() if k != "MasterRecordId"}) == []


async def test_the_sample_invalid_field_answer(client, auth, contract):
    resp, data = await soql(client, auth, "SELECT Nme FROM Account")
    assert (resp.status, data) == (400, contract(SAMPLES + "rest-error.400-malformed-query.json"))


@pytest.mark.parametrize(
    ("query", "code", "message_end"),
    [
        ("SELECT Id FROM Accounts", "INVALID_TYPE", "sObject type 'Accounts' is not supported. If you are attempting "
         "to use a custom object, be sure to append the '__c' after the entity name. Please reference your WSDL or the "
         "describe call for the appropriate names."),
        ("SELECT Id FROM Account WHERE Name = 'a' OR Name = 'b'", "MALFORMED_QUERY", "unexpected token: 'OR'"),
        ("SELECT Id FROM Account WHERE", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
        ("SELECT Id, FROM Account", "MALFORMED_QUERY", "unexpected token: 'FROM'"),
        ("SELECT Id FROM Account LIMIT ten", "MALFORMED_QUERY", "unexpected token: 'ten'"),
        ("SELECT Id FROM Account ORDER BY Name NULLS", "MALFORMED_QUERY", "unexpected token: '<EOF>'"),
        ("SELECT COUNT() FROM Account", "MALFORMED_QUERY", "unexpected token: '('"),
        ("SELECT Id FROM Account WHERE Name LIKE 'a%'", "MALFORMED_QUERY", "unexpected token: 'LIKE'"),
        ("SELECT Id FROM Account WHERE Name IN ('a')", "MALFORMED_QUERY", "unexpected token: '('"),
        ("SELECT Id FROM Account extra", "MALFORMED_QUERY", "unexpected token: 'extra'"),
        ("SELECT Owner.Name FROM Account", "INVALID_FIELD", "No such column 'Owner.Name' on entity 'Account'."),
        ("SELECT Id FROM Account WHERE SystemModstamp > '2024-01-01T00:00:00Z'", "INVALID_FIELD",
         "value of filter criterion for field 'SystemModstamp' must be of type dateTime and should not be enclosed in "
         "quotes"),
        ("SELECT Id FROM Account WHERE Name = 5", "INVALID_FIELD",
         "value of filter criterion for field 'Name' must be of type string and must be enclosed in quotes"),
    ],
)
async def test_soql_errors(client, auth, query, code, message_end):
    resp, data = await soql(client, auth, query)
    assert resp.status == 400 and data[0]["errorCode"] == code and set(data[0]) == {"message", "errorCode"}
    assert data[0]["message"].startswith(f"\n{query}\n") and data[0]["message"].endswith("\n" + message_end)
    caret, where = data[0]["message"].split("\n")[2:4]
    assert where == f"ERROR at Row:1:Column:{len(caret)}"


async def test_a_query_needs_q(client, auth):
    resp, data = await call(client, "GET", f"{V}/query", auth)
    assert resp.status == 400 and data[0]["errorCode"] == "MALFORMED_QUERY"


# --- sObject rows -----------------------------------------------------------------------------------------------


async def test_sobject_create_get_update_delete(client, auth, state, contract):
    resp, created = await call(client, "POST", f"{V}/sobjects/Opportunity/", auth, {
        "Name": "Café Olé — 500 seats", "StageName": "Negotiation/Review", "CloseDate": "2025-03-31", "Amount": 125000,
        "CurrencyIsoCode": "EUR"})
    sample = contract(SAMPLES + "rest-sobject-create.201.json")
    assert resp.status == 201 and list(created) == list(sample) and created["errors"] == [] and created["success"]
    oid = created["id"]
    assert oid.startswith("006") and to_18(oid[:15]) == oid and resp.headers["Location"] == f"{V}/sobjects/Opportunity/{oid}"
    resp, record = await call(client, "GET", f"{V}/sobjects/Opportunity/{oid}", auth)
    got = contract(SAMPLES + "rest-sobject-get.200.json")
    assert same_shape(record, {k: v for k, v in got.items() if k in record}) == []
    assert list(record)[:3] == ["attributes", "Id", "IsDeleted"] and record["attributes"]["type"] == "Opportunity"
    assert (record["Amount"], record["Probability"], record["IsClosed"], record["CurrencyIsoCode"]) == (
        125000.0, 90.0, False, "EUR")
    assert all(REST_TIME.match(record[k]) for k in ("CreatedDate", "LastModifiedDate", "SystemModstamp"))
    assert record["OwnerId"] == record["CreatedById"] == state.api_user_id
    resp, body = await call(client, "PATCH", f"{V}/sobjects/Opportunity/{oid}", auth, {"stagename": "Closed Lost"})
    assert (resp.status, body) == (204, "")
    _, record = await call(client, "GET", f"{V}/sobjects/Opportunity/{oid}?fields=StageName,IsClosed,IsWon,Probability",
                           auth)
    assert {k: v for k, v in record.items() if k != "attributes"} == {
        "StageName": "Closed Lost", "IsClosed": True, "IsWon": False, "Probability": 0.0}
    assert (await call(client, "DELETE", f"{V}/sobjects/Opportunity/{oid}", auth))[0].status == 204
    deleted = contract(SAMPLES + "rest-error.404-entity-is-deleted.json")
    for method in ("GET", "PATCH", "DELETE"):
        resp, data = await call(client, method, f"{V}/sobjects/Opportunity/{oid}", auth, {} if method == "PATCH" else None)
        assert (resp.status, data) == (404, deleted), method
    missing = contract(SAMPLES + "rest-error.404-not-found.json")
    for path in (f"{V}/sobjects/Opportunity/{to_18('006Hq00000NoSuc')}", f"{V}/sobjects/Widget__c/{oid}",
                 f"{V}/sobjects/Opportunity/{oid}/describe/x", "/services/data/v12.0/limits"):
        assert await (await client.get(path, headers=auth)).json() == missing, path


@pytest.mark.parametrize(
    ("body", "code", "fields"),
    [
        ({"Name": "no stage"}, "REQUIRED_FIELD_MISSING", ["StageName", "CloseDate"]),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "2025-01-01", "IsWon": True},
         "INVALID_FIELD_FOR_INSERT_UPDATE", ["IsWon"]),
        ({"Name": "x", "Stage": "Prospecting"}, "INVALID_FIELD", None),
        ({"Name": "x", "StageName": "Won", "CloseDate": "2025-01-01"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
         ["StageName"]),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "01/01/2025"}, "JSON_PARSER_ERROR", None),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "2025-01-01", "Amount": "12"}, "JSON_PARSER_ERROR", None),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "2025-01-01", "AccountId": "acme"}, "MALFORMED_ID",
         ["AccountId"]),
        ({"Name": "x", "StageName": "Prospecting", "CloseDate": "2025-01-01", "CurrencyIsoCode": "XXX"},
         "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST", ["CurrencyIsoCode"]),
    ],
)
async def test_create_refusals(client, auth, contract, body, code, fields):
    resp, data = await call(client, "POST", f"{V}/sobjects/Opportunity", auth, body)
    assert resp.status == 400 and data[0]["errorCode"] == code and data[0].get("fields") == fields
    if code == "REQUIRED_FIELD_MISSING":
        sample = contract(SAMPLES + "rest-error.400-required-field-missing.json")
        assert list(data[0]) == list(sample[0])


async def test_bad_json_bodies(client, auth, state):
    resp = await client.post(f"{V}/sobjects/Account", data=b"{nope", headers={**auth, "Content-Type": "application/json"})
    assert resp.status == 400 and (await resp.json())[0]["errorCode"] == "JSON_PARSER_ERROR"
    record = person(state, "Account", Name="Acme")
    resp, data = await call(client, "PATCH", f"{V}/sobjects/Account/{record.id}", auth, ["Name"])
    assert resp.status == 400 and data[0]["errorCode"] == "JSON_PARSER_ERROR"
    resp, data = await call(client, "PATCH", f"{V}/sobjects/Account/{record.id}", auth, {"Name": None})
    assert resp.status == 400 and data[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


async def test_updated_and_deleted_like_the_samples(client, auth, state, clock, contract):
    start = "2023-11-14T22:10:00+00:00"
    kept, gone = person(state, "Account", Name="Kept"), person(state, "Account", Name="Gone")
    clock.advance(60)
    state.delete("Account", gone.id, user_id=state.person_user_id)
    clock.advance(120)
    params = {"start": start, "end": "2023-11-14T23:00:00+00:00"}
    _, updated = await call(client, "GET", f"{V}/sobjects/Account/updated/", auth, params=params)
    _, deleted = await call(client, "GET", f"{V}/sobjects/Account/deleted/", auth, params=params)
    assert list(updated) == list(contract(SAMPLES + "rest-getupdated.200.json")) and updated["ids"] == [kept.id]
    sample = contract(SAMPLES + "rest-getdeleted.200.json")
    assert list(deleted) == list(sample) and list(deleted["deletedRecords"][0]) == ["id", "deletedDate"]
    assert deleted["deletedRecords"][0]["id"] == gone.id and REST_TIME.match(deleted["deletedRecords"][0]["deletedDate"])
    assert REST_TIME.match(deleted["latestDateCovered"]) and deleted["latestDateCovered"].endswith(":00.000+0000")
    for bad in ({"start": start, "end": start}, {"start": "2023-10-01T00:00:00Z", "end": start},
                {"start": "yesterday", "end": start}):
        resp, data = await call(client, "GET", f"{V}/sobjects/Account/deleted/", auth, params=bad)
        assert (resp.status, data[0]["errorCode"]) == (400, "INVALID_REPLICATION_DATE"), bad


# --- injected errors and faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [
    "rest-error.400-duplicate-value.json", "rest-error.400-required-field-missing.json",
    "rest-error.400-unable-to-lock-row.json", "rest-error.401-invalid-session.json",
    "rest-error.403-request-limit-exceeded.json", "rest-error.404-entity-is-deleted.json",
    "rest-error.404-not-found.json",
])
async def test_injected_errors_answer_like_the_samples(client, auth, contract, name):
    sample = contract(SAMPLES + name)
    status = int(name.split(".")[1].split("-")[0])
    resp = await client.post("/_sandbox/errors", json={"path": f"{V}/sobjects/Task", "errorCode": sample[0]["errorCode"],
                                                       "message": sample[0]["message"]})
    assert resp.status == 200
    resp, data = await call(client, "POST", f"{V}/sobjects/Task", auth, {"Subject": "x"})
    assert (resp.status, data) == (status, sample)
    assert (await call(client, "POST", f"{V}/sobjects/Task", auth, {"Subject": "x"}))[0].status == 201  # count 1


async def test_injected_error_defaults_and_validation(client, auth):
    await client.post("/_sandbox/errors", json=[{"path": "/services/data/", "errorCode": "UNABLE_TO_LOCK_ROW",
                                                 "count": 2}])
    listed = await (await client.get("/_sandbox/errors")).json()
    assert listed["errors"][0]["count"] == 2 and listed["errors"][0]["status"] == 400
    resp, data = await call(client, "GET", f"{V}/limits", auth)
    assert resp.status == 400 and data[0]["errorCode"] == "UNABLE_TO_LOCK_ROW" and data[0]["fields"] == []
    assert data[0]["message"].startswith("unable to obtain exclusive access to this record or 1 records: 001")
    assert (await client.delete("/_sandbox/errors")).status == 200
    assert (await client.get(f"{V}/limits", headers=auth)).status == 200
    for bad in ({"path": "/x", "errorCode": "A"}, {"path": "/services/data/"}, {"path": "/services/", "errorCode": "A",
                                                                                "status": 200}, {"nope": 1}):
        assert (await client.post("/_sandbox/errors", json=bad)).status == 400


@pytest.mark.parametrize("status", [401, 403, 404, 500, 503])
async def test_fault_rules_answer_error_arrays(client, auth, status):
    await client.post("/_sandbox/faults", json={"path": "/services/data/", "status": status})
    resp, data = await call(client, "GET", f"{V}/limits", auth)
    assert resp.status == status and isinstance(data, list) and set(data[0]) == {"message", "errorCode"}
    assert LIMIT_INFO.match(resp.headers["Sforce-Limit-Info"])


# --- change data capture -----------------------------------------------------------------------------------------


def header_of(event):
    return event["data"]["payload"]["ChangeEventHeader"]


def body_of(event):
    return {k: v for k, v in event["data"]["payload"].items() if k != "ChangeEventHeader"}


async def test_changes_publish_change_events_like_the_samples(client, auth, state, clock, contract):
    resp = await client.post("/_sandbox/records/Account", json={"fields": {"Name": "Acme", "Description": "d"}})
    account = (await resp.json())["record"]
    assert resp.status == 201 and account["LastModifiedById"] == state.person_user_id
    clock.advance(5)
    await client.post(f"/_sandbox/records/Account/{account['Id']}", json={"fields": {"Name": "Acme Corp",
                                                                                     "Description": None}})
    await call(client, "PATCH", f"{V}/sobjects/Account/{account['Id']}", auth, {"Name": "Acme AG"},
               headers={"Sforce-Call-Options": "client=switchboard, defaultNamespace=sb"})
    await client.delete(f"/_sandbox/records/Account/{account['Id']}")
    await client.post(f"/_sandbox/records/Account/{account['Id']}/undelete", json={"user_id": "005Hq000000PerT"})
    cdc = await (await client.get("/_sandbox/cdc")).json()
    create, update, api_update, delete, undelete = cdc["events"]
    assert cdc["latest_replay_id"] == 5 and [e["data"]["event"]["replayId"] for e in cdc["events"]] == [1, 2, 3, 4, 5]
    for ours, name in ((create, "create"), (update, "update"), (delete, "delete"), (undelete, "undelete")):
        sample = contract(f"{SAMPLES}cdc-account.{name}.json")
        assert ours["channel"] == sample["channel"] == "/data/AccountChangeEvent"
        assert list(ours["data"]) == list(sample["data"]) and list(header_of(ours)) == list(header_of(sample))
        assert same_shape(header_of(ours), header_of(sample)) == [] and len(ours["data"]["schema"]) == 22
        assert [k for k in body_of(sample) if k not in body_of(ours)] == [], name
    assert header_of(create)["changeType"] == "CREATE" and header_of(create)["changedFields"] == []
    assert "IsDeleted" not in body_of(create) and all(CDC_TIME.match(body_of(create)[k]) for k in ("CreatedDate",
                                                                                                  "LastModifiedDate"))
    assert body_of(update) == {"Name": "Acme Corp", "Description": None, "LastModifiedDate": body_of(update)["LastModifiedDate"]}
    assert header_of(update)["changedFields"] == ["Name", "Description", "LastModifiedDate"]
    assert header_of(update)["nulledFields"] == ["Description"] and header_of(update)["changeOrigin"] == ""
    assert header_of(api_update)["changeOrigin"] == "com/salesforce/api/rest/62.0;client=switchboard"
    assert header_of(api_update)["commitUser"] == state.api_user_id
    assert header_of(api_update)["changedFields"] == ["Name", "LastModifiedDate", "LastModifiedById"]
    assert body_of(delete) == {} and header_of(delete)["recordIds"] == [account["Id"]]
    assert body_of(undelete)["IsDeleted"] is False and header_of(undelete)["commitUser"] == to_18("005Hq000000PerT")
    assert len({header_of(e)["transactionKey"] for e in cdc["events"]}) == 5
    assert [e["data"]["event"]["replayId"] for e in (await (await client.get("/_sandbox/cdc?after=3")).json())["events"]] == [4, 5]
    for event in cdc["events"]:  # and the hub maps every one of them
        for record in to_sales_events(cdc_envelope(event, received_at_ms=1), hub_client="switchboard"):
            schemas.validate("sales_event.v1", record)


async def test_identical_changes_in_one_transaction_share_one_event(client, state, contract):
    ids = [person(state, "Opportunity", Name=f"o{n}").id for n in range(3)]
    state.update("Opportunity", [ids[0]], {"Amount": 5}, user_id=state.person_user_id)
    state.cdc_events.clear()
    resp = await client.patch("/_sandbox/records/Opportunity", json={"ids": ids, "fields": {"OwnerId": "005Hq000000PerT"}})
    assert resp.status == 200 and len((await resp.json())["records"]) == 3
    [event] = state.cdc_events
    assert header_of(event)["recordIds"] == ids and header_of(event)["changedFields"] == [
        "OwnerId", "LastModifiedDate"]
    sample = contract(SAMPLES + "cdc-account.update-merged-recordIds.json")
    assert set(body_of(event)) == set(body_of(sample))
    state.cdc_events.clear()
    await client.patch("/_sandbox/records/Opportunity", json={"ids": ids, "fields": {"Amount": 5}})
    assert [header_of(e)["recordIds"] for e in state.cdc_events] == [[ids[0]], ids[1:]]  # ids[0] had it already
    assert [header_of(e)["sequenceNumber"] for e in state.cdc_events] == [1, 2]
    assert len({header_of(e)["transactionKey"] for e in state.cdc_events}) == 1


async def test_the_gap_switch(client, state, contract):
    record = person(state, "Opportunity", Name="o")
    resp = await client.post("/_sandbox/cdc", json={"next_gaps": 1, "gap_kind": "gap"})
    assert (await resp.json())["next_gaps"] == 1
    await client.post(f"/_sandbox/records/Opportunity/{record.id}", json={"fields": {"Amount": 1}})
    await client.post("/_sandbox/cdc", json={"next_gaps": 1, "gap_kind": "overflow"})
    await client.post(f"/_sandbox/records/Opportunity/{record.id}", json={"fields": {"Amount": 2}})
    await client.post(f"/_sandbox/records/Opportunity/{record.id}", json={"fields": {"Amount": 3}})
    gap, overflow, normal = state.cdc_events[1:]
    sample_gap, sample_overflow = (contract(SAMPLES + "cdc-account.gap-update.json"),
                                   contract(SAMPLES + "cdc-account.gap-overflow.json"))
    assert header_of(gap)["changeType"] == "GAP_UPDATE" and header_of(gap)["recordIds"] == [record.id]
    assert header_of(overflow)["changeType"] == "GAP_OVERFLOW" and header_of(overflow)["recordIds"] == []
    assert body_of(gap) == body_of(sample_gap) == {} and body_of(overflow) == body_of(sample_overflow) == {}
    assert header_of(gap)["changedFields"] == [] and header_of(normal)["changeType"] == "UPDATE"
    assert [r["kind"] for r in to_sales_events(cdc_envelope(overflow, received_at_ms=1))] == ["reread"]


async def test_cdc_can_be_switched_off_per_entity_or_entirely(client, state):
    await client.post("/_sandbox/cdc", json={"entities": ["Opportunity"]})
    person(state, "Account", Name="quiet")
    person(state, "Opportunity", Name="loud")
    await client.post("/_sandbox/cdc", json={"enabled": False})
    person(state, "Opportunity", Name="muted")
    assert [header_of(e)["entityName"] for e in state.cdc_events] == ["Opportunity"]
    for bad in ({"entities": ["Lead"]}, {"next_gaps": -1}, {"gap_kind": "x"}, {"enabled": "yes"}, {"nope": 1}):
        assert (await client.post("/_sandbox/cdc", json=bad)).status == 400
    assert (await client.get("/_sandbox/cdc?after=x")).status == 400


async def test_feature_request_channel_and_task(client, auth, state):
    opp = person(state, "Opportunity", Name="o")
    resp = await client.post("/_sandbox/records/Feature_Request__c", json={"fields": {
        "Name": "Dark mode", "Opportunity__c": opp.id, "Description__c": "see OPS-142"}})
    request = (await resp.json())["record"]
    assert request["Id"].startswith("a05") and state.cdc_events[-1]["channel"] == "/data/Feature_Request__ChangeEvent"
    [record] = to_sales_events(cdc_envelope(state.cdc_events[-1], received_at_ms=1))
    assert record["object"] == "feature_request" and record["fields"]["text"] == "Dark mode\nsee OPS-142"
    resp, created = await call(client, "POST", f"{V}/sobjects/Task", auth, {"Subject": "OPS-142 is Done",
                                                                             "WhatId": request["Id"]})
    task = state.record("Task", created["id"]).values
    assert (task["Status"], task["Priority"], task["WhatId"]) == ("Not Started", "Normal", request["Id"])


async def test_control_endpoint_refusals(client, state):
    record = person(state, "Account", Name="Acme")
    cases = [
        ("POST", "/_sandbox/records/Lead", {"fields": {}}, 400),
        ("POST", "/_sandbox/records/Account", {"fields": {"Name": "x"}, "user_id": "001XX000003DHPm"}, 400),
        ("POST", "/_sandbox/records/Account", {"fields": []}, 400),
        ("POST", "/_sandbox/records/Account", {"Name": "fields go in fields"}, 400),
        ("PATCH", "/_sandbox/records/Account", {"fields": {"Name": "x"}}, 400),
        ("POST", f"/_sandbox/records/Account/{record.id}/undelete", {}, 400),  # not in the Recycle Bin: an API error
        ("POST", "/_sandbox/records/Account/001XX000003DHPmYAO", {"fields": {"Name": "x"}}, 404),
        ("POST", "/_sandbox/records/Account", {"fields": {}}, 400),  # Name is required, for a person too
    ]
    for method, path, body, status in cases:
        resp = await client.request(method, path, json=body)
        assert resp.status == status, (method, path, body)
    resp = await client.post("/_sandbox/records/Account", json={"fields": {"IsDeleted": True, "Name": "x"}})
    assert (await resp.json())[0]["errorCode"] == "INVALID_FIELD_FOR_INSERT_UPDATE"


async def test_state_reset_and_start_sandbox(client, auth, state, unused_tcp_port):
    person(state, "Account", Name="Acme")
    snapshot = await (await client.get("/_sandbox/state")).json()
    assert len(snapshot["records"]["Account"]) == 1 and snapshot["tokens"] == 1 and snapshot["cdc"]["latest_replay_id"] == 1
    assert (await client.post("/_sandbox/reset")).status == 204
    snapshot = await (await client.get("/_sandbox/state")).json()
    assert snapshot["records"]["Account"] == {} and snapshot["tokens"] == 0 and snapshot["cdc"]["events"] == []
    assert (await client.get(f"{V}/limits", headers=auth)).status == 401  # tokens went with the reset
    async with await start_sandbox(ports={"salesforce": unused_tcp_port}) as sandbox:
        assert sandbox.urls["salesforce"] == f"http://127.0.0.1:{unused_tcp_port}"
        assert isinstance(sandbox.states["salesforce"], SalesforceState)


def test_ids_carry_the_case_checksum(state):
    ids = [state.new_id("006") for _ in range(70)]
    assert all(to_18(i[:15]) == i for i in ids) and ids == sorted(ids) and len(set(ids)) == 70


def test_revenue_at_stake_counts_open_undeleted_opportunities_per_currency():
    """The yardstick the bench and the chaos suite hold the hub's revenue view to."""
    sf = SalesforceState()
    acct = sf.create("Account", {"Name": "Acme"}, user_id=sf_fake.DEFAULT_PERSON_USER_ID).id

    def opp(amount, stage, currency="USD"):
        return sf.create("Opportunity", {"Name": "Deal", "Amount": amount, "StageName": stage, "CloseDate": "2027-06-30",
                                         "AccountId": acct, "CurrencyIsoCode": currency}, user_id=sf_fake.DEFAULT_PERSON_USER_ID).id

    a, b, c = opp(1000, "Prospecting"), opp(2001, "Needs Analysis", "EUR"), opp(5000, "Closed Lost")
    d = opp(700, "Prospecting")
    sf.delete("Opportunity", d, user_id=sf_fake.DEFAULT_PERSON_USER_ID)
    assert sf.revenue_at_stake([a, b, c, d, a]) == {"EUR": {"count": 1, "amount": 2001.0, "weighted": 400.2},
                                                    "USD": {"count": 1, "amount": 1000.0, "weighted": 100.0}}
    assert sf.revenue_at_stake([]) == {} and sf.revenue_at_stake(["006000000000000AAA"]) == {}
