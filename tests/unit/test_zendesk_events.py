"""classify(): both webhook styles, supported and not; the recommended trigger body; settings."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from connectors.errors import MappingError
from connectors.zendesk.events import (
    EVENT_KINDS,
    RECOMMENDED_TRIGGER_BODY,
    TRIGGER_EVENTS,
    TRIGGER_TICKET_KEYS,
    Classified,
    classify,
    recommended_trigger_body,
)
from connectors.zendesk.settings import ZendeskSettings


def event(kind: str, **extra):
    return {"type": f"zen:event-type:{kind}", "subject": "zen:ticket:5158", "detail": {"id": "5158"}, **extra}


@pytest.mark.parametrize("name", sorted(EVENT_KINDS))
def test_every_supported_event_type(name):
    assert classify({"type": name, "detail": {"id": "5158"}}) == Classified(name, "5158", True, "event")


@pytest.mark.parametrize(
    "kind", ["ticket.comment_made_private", "ticket.brand_changed", "user.active_changed", "organization.created",
             "ticket.something_new"],
)
def test_unknown_event_types_are_unsupported_and_never_raise(kind):
    got = classify({"type": f"zen:event-type:{kind}", "detail": {"id": "not-a-ticket"}, "subject": "zen:user:9"})
    assert got == Classified(f"zen:event-type:{kind}", None, False, "event")


def test_event_ticket_id_from_detail_then_subject():
    assert classify(event("ticket.created")).ticket_id == "5158"
    assert classify({"type": "zen:event-type:ticket.created", "subject": "zen:ticket:77"}).ticket_id == "77"
    assert classify({"type": "zen:event-type:ticket.created", "detail": {"id": 78}}).ticket_id == "78"
    assert classify({"type": "zen:event-type:ticket.created", "detail": {"id": "007"}}).ticket_id == "7"


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"type": "zen:event-type:ticket.created"}, "detail.id"),
        ({"type": "zen:event-type:ticket.created", "subject": "zen:user:5"}, "detail.id"),
        ({"type": "zen:event-type:ticket.created", "detail": {"id": "0"}}, "detail.id"),
        ({"type": "zen:event-type:ticket.created", "detail": {"id": True}}, "detail.id"),
        ({"type": "zen:event-type:ticket.created", "detail": []}, "detail"),
        ({"switchboard": 1, "event": "ticket_updated"}, "ticket"),
        ({"switchboard": 1, "ticket": {"id": "{{ticket.id}}"}}, "ticket.id"),
        ([], "$"),
    ],
)
def test_supported_without_a_ticket_id_raises_with_the_path(payload, path):
    with pytest.raises(MappingError) as info:
        classify(payload)
    assert info.value.path == path


@pytest.mark.parametrize("name", sorted(TRIGGER_EVENTS))
def test_trigger_bodies(name):
    body = {"switchboard": 1, "event": name, "ticket": {"id": "48213"}}
    assert classify(body) == Classified(f"trigger:{name}", "48213", True, "trigger")
    assert classify({**body, "switchboard": "1"}).supported


@pytest.mark.parametrize(
    ("body", "event_type"),
    [
        ({"ticket_id": "48213"}, None),
        ({"switchboard": 2, "event": "ticket_updated", "ticket": {"id": "1"}}, None),
        ({"switchboard": True, "event": "ticket_updated", "ticket": {"id": "1"}}, None),
        ({"switchboard": 1, "event": "ticket_solved", "ticket": {"id": "1"}}, "trigger:ticket_solved"),
        ({"switchboard": 1, "event": 5, "ticket": {"id": "1"}}, None),
        ({"type": "", "switchboard": 2}, None),
    ],
)
def test_other_trigger_bodies_are_unsupported(body, event_type):
    got = classify(body)
    assert (got.supported, got.event_type, got.ticket_id, got.style) == (False, event_type, None, "trigger")


def test_trigger_event_defaults_to_ticket_updated():
    assert classify({"switchboard": 1, "ticket": {"id": 9}}).event_type == "trigger:ticket_updated"


def test_recommended_body_is_json_once_rendered_and_names_real_placeholders():
    text = recommended_trigger_body("comment_added", 360012345678)
    assert "<" not in text and "{{ticket.ticket_field_360012345678}}" in text
    body = json.loads(text)  # placeholders sit inside JSON strings
    assert body["switchboard"] == 1 and body["event"] == "comment_added"
    assert set(body["ticket"]) == TRIGGER_TICKET_KEYS | {"via", "latest_comment"}
    # the second-resolution timestamp, not {{ticket.updated_at}} (day resolution)
    assert "{{ticket.updated_at_with_timestamp}}" in RECOMMENDED_TRIGGER_BODY
    assert "{{ticket.latest_comment.id}}" in RECOMMENDED_TRIGGER_BODY
    with pytest.raises(ValueError):
        recommended_trigger_body("ticket_solved", 1)
    with pytest.raises(ValueError):
        recommended_trigger_body("ticket_updated", "field")


# --- settings --------------------------------------------------------------------------------------


def test_settings_defaults_and_normalisation():
    s = ZendeskSettings(base_url="https://acme.zendesk.com/", email="hub@acme.test", api_token="t0k",
                        webhook_secret="whsec", hub_user_id="9100000000777")
    assert s.base_url == "https://acme.zendesk.com"
    assert s.export_requests_per_minute == 10 and s.export_per_page == 1000 and s.replay_window_s == 300
    assert s.configured and not ZendeskSettings().configured
    assert "t0k" not in repr(s) and "whsec" not in repr(s) and "t0k" not in str(s.model_dump())


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"base_url": "ftp://acme.zendesk.com"}, "base_url"),
        ({"base_url": "https://user:pw@acme.zendesk.com"}, "base_url"),
        ({"require_signature": True}, "require_signature"),
        ({"email": "hub@acme.test"}, "api_token"),
        ({"webhook_secret": ""}, "webhook_secret"),
        ({"hub_user_id": "hub"}, "hub_user_id"),
        ({"hub_user_id": "0"}, "hub_user_id"),
        ({"replay_window_s": 0}, "replay_window_s"),
        ({"export_requests_per_minute": 31}, "export_requests_per_minute"),
        ({"export_per_page": 1001}, "export_per_page"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_settings_reject_bad_values_naming_the_key(kwargs, needle):
    with pytest.raises(ValidationError) as info:
        ZendeskSettings(**kwargs)
    assert needle in str(info.value)
