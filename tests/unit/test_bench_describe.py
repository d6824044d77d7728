"""hub/bench.py MixedLoad.describe: a missing effect is reported with what the fakes show for it."""

from hub.bench import MIXED_ORGS, MixedLoad
from hub.stack import SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD
from sandbox.jira import JiraState
from sandbox.salesforce import SalesforceState
from sandbox.zendesk import DEFAULT_AGENT_ID, ZendeskState


def _load() -> MixedLoad:
    zd = ZendeskState(organizations=MIXED_ORGS, custom_field_ids=[SANDBOX_ZENDESK_LINKS_FIELD, SANDBOX_ZENDESK_STATUS_FIELD])
    return MixedLoad(JiraState(), zd, SalesforceState(), "http://127.0.0.1:9/webhooks/jira", 100)


def test_a_missing_note_shows_the_tickets_notes_tags_and_status_field():
    load = _load()
    issue = load.jira.create_issue("SUP", "Export problem 1")
    load.jira.update_issue(issue.id, status="In Progress")
    tid = load._ticket("It does not work", org=next(iter(MIXED_ORGS)), key_field=issue.key)
    load.tickets[tid] = issue.id
    load.zd.update_ticket(tid, actor_id=DEFAULT_AGENT_ID, channel="api", add_tags=["jira_linked"],
                          custom_fields={SANDBOX_ZENDESK_STATUS_FIELD: f"{issue.key}: In Progress"},
                          comment=f"{issue.key} is now In Progress.\n— Switchboard [ref {issue.id}:e1]", public=False)

    text = load.describe(("internal_notes", tid, 2))

    assert f"ticket {tid} (named at creation) -> {issue.key} (status 'In Progress')" in text
    assert f"notes ['{issue.id}:e1']" in text
    assert "jira_linked" in text and f"'{issue.key}: In Progress'" in text


def test_other_kinds_are_named_by_their_identity():
    assert _load().describe(("revenue", "10001", "{}")) == "revenue ('10001', '{}')"
