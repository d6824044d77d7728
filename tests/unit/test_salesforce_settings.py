"""SalesforceSettings: typed, secret-aware, and bad combinations rejected with the key named."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from connectors.salesforce.settings import FeatureRequestFields, SalesforceSettings

OK = {"instance_url": "https://acme.my.salesforce.com/", "client_id": "3MVG9-consumer-key",
      "client_secret": "s3cr3t-value"}


def test_client_credentials_and_defaults():
    s = SalesforceSettings(**OK)
    assert s.configured and s.instance_url == "https://acme.my.salesforce.com"
    assert s.token_endpoint == "https://acme.my.salesforce.com/services/oauth2/token"
    assert s.api_version == "62.0" and s.page_size == 2000 and s.client_name == "switchboard"
    assert s.feature_request.object_name == "Feature_Request__c"
    assert s.feature_request.text_fields == ("Name", "Description__c")
    assert "s3cr3t-value" not in repr(s) and "s3cr3t-value" not in str(s.model_dump())
    assert not SalesforceSettings().configured


def test_refresh_token_flow_needs_no_secret_and_token_url_overrides():
    s = SalesforceSettings(instance_url="http://127.0.0.1:8080", client_id="cid", refresh_token="5Aep-refresh",
                           token_url="https://login.salesforce.com/services/oauth2/token")
    assert s.configured and s.token_endpoint == "https://login.salesforce.com/services/oauth2/token"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"instance_url": "acme.my.salesforce.com"}, "instance_url"),
        ({"instance_url": "https://user:pw@acme.my.salesforce.com"}, "instance_url"),
        ({"client_secret": ""}, "client_secret"),
        ({"api_version": "62"}, "api_version"),
        ({"api_version": "20.0"}, "api_version"),
        ({"hub_user_id": "001XX000003DHPmYAO"}, "hub_user_id"),
        ({"hub_user_id": "005XX000001Svo"}, "hub_user_id"),
        ({"client_name": "has space"}, "client_name"),
        ({"page_size": 100}, "page_size"),
        ({"page_size": 2001}, "page_size"),
        ({"poll_interval_s": 1}, "poll_interval_s"),
        ({"feature_request": {"object_name": "Feature Request"}}, "feature_request.object_name"),
        ({"feature_request": {"jira_key_field": "Jira_Key__x"}}, "feature_request.jira_key_field"),
        ({"feature_request": {"text_fields": []}}, "feature_request.text_fields"),
        ({"feature_request": {"text_fields": ["Name", "Name"]}}, "feature_request.text_fields"),
        ({"feature_request": {"nope": 1}}, "feature_request.nope"),
        ({"password": "x"}, "password"),
        ({"security_token": "x"}, "security_token"),
    ],
)
def test_bad_values_name_the_key(change, key):
    with pytest.raises(ValidationError) as info:
        SalesforceSettings(**{**OK, **change})
    assert key in {".".join(str(p) for p in e["loc"]) for e in info.value.errors()}


@pytest.mark.parametrize(
    "values",
    [
        {"instance_url": "https://acme.my.salesforce.com", "client_id": "cid"},  # no secret, no refresh token
        {"instance_url": "https://acme.my.salesforce.com", "client_secret": "x"},  # secret without client
        {"client_id": "cid", "client_secret": "x"},  # nowhere to send it
    ],
)
def test_bad_combinations(values):
    with pytest.raises(ValidationError):
        SalesforceSettings(**values)


def test_ids_and_names_accepted():
    s = SalesforceSettings(**OK, hub_user_id="005XX000001Svog",
                           feature_request={"object_name": "ns__Idea__c", "text_fields": ["Body__c"]})
    assert s.hub_user_id == "005XX000001Svog" and s.feature_request.text_fields == ("Body__c",)
    with pytest.raises(ValidationError):
        SalesforceSettings(**OK, extra=1)
    fields = FeatureRequestFields()
    with pytest.raises(ValidationError):  # frozen
        fields.object_name = "X__c"
