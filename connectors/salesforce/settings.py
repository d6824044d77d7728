"""Settings of the Salesforce connector (validated at start-up; secrets are never printed).

OAuth 2.0 flows: client credentials
https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_client_credentials_flow.htm and
refresh token https://help.salesforce.com/s/articleView?id=sf.remoteaccess_oauth_refresh_token_flow.htm
(token endpoint ``https://<MyDomain>.my.salesforce.com/services/oauth2/token``; the client-credentials
flow only works against the org's My Domain, not ``login.salesforce.com``).

Username + password + security token is deliberately not offered: simple-salesforce implements it
with the SOAP ``login()`` call, which Salesforce is retiring (Summer '27), which is unavailable from
API v65.0 and disabled by default in orgs created from Winter '26
(https://developer.salesforce.com/docs/platform/api/guide/sforce-api-calls-login.html,
https://developer.salesforce.com/docs/platform/api/guide/api-eol-soap.html).
"""

from __future__ import annotations

import re
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: Query batch size (``Sforce-Query-Options: batchSize``): "The default is 2,000; the minimum is 200,
#: and the maximum is 2,000" (REST API Developer Guide, Query Options Header).
QUERY_BATCH_MIN = 200
QUERY_BATCH_MAX = 2000
#: The oldest API version whose REST resources the connector uses (queryAll and sObject Get
#: Deleted/Updated exist from 29.0); the newest the fake knows.
MIN_API_VERSION = 29
DEFAULT_API_VERSION = "62.0"

#: ``Name``, ``Jira_Key__c``, or with a managed package's namespace ``ns__Jira_Key__c``.
_API_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9]*__)?[A-Za-z](?:[A-Za-z0-9]|_(?!_))*(?:__c)?$")
_USER_ID = re.compile(r"^005[A-Za-z0-9]{12}(?:[A-Za-z0-9]{3})?$")
_CLIENT_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")


def api_name(value: str) -> str:
    """Check a Salesforce API name (``Opportunity``, ``Jira_Key__c``)."""
    if not _API_NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a Salesforce API name (letters, digits, single underscores, "
                         "optionally ending in __c)")
    return value


class FeatureRequestFields(BaseModel):
    """The custom feature-request object and its fields (API names, as in Setup → Object Manager)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    object_name: str = "Feature_Request__c"
    #: lookup to the Opportunity the request came from
    opportunity_field: str = "Opportunity__c"
    #: lookup to the Account
    account_field: str = "Account__c"
    #: the linked Jira issue key, typed by a person or written by the hub
    jira_key_field: str = "Jira_Key__c"
    #: text fields searched for Jira keys, in this order
    text_fields: tuple[str, ...] = ("Name", "Description__c")
    #: fields the hub writes back: the Jira issue's status and fix version
    jira_status_field: str = "Jira_Status__c"
    jira_fix_version_field: str = "Jira_Fix_Version__c"

    @field_validator("object_name", "opportunity_field", "account_field", "jira_key_field", "jira_status_field",
                     "jira_fix_version_field")
    @classmethod
    def _name(cls, value: str) -> str:
        return api_name(value)

    @field_validator("text_fields")
    @classmethod
    def _text_fields(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("name at least one text field")
        if len(set(value)) != len(value):
            raise ValueError("lists a field twice")
        return tuple(api_name(v) for v in value)


class SalesforceSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: The org's My Domain URL, ``https://<MyDomain>.my.salesforce.com`` (or the sandbox's
    #: ``http://127.0.0.1:<port>``). API calls go here; the token's ``instance_url`` is not followed.
    instance_url: str | None = None
    #: OAuth token endpoint; default ``<instance_url>/services/oauth2/token``.
    token_url: str | None = None
    #: The connected app's consumer key and secret.
    client_id: str | None = None
    client_secret: SecretStr | None = None
    #: Set: the refresh-token flow; unset: the client-credentials flow (the app's run-as user).
    refresh_token: SecretStr | None = None
    api_version: str = DEFAULT_API_VERSION
    #: Sent as ``Sforce-Call-Options: client=<client_name>``; Change Data Capture reports it in
    #: ``changeOrigin``, so the hub recognises its own writes.
    client_name: str = "switchboard"
    #: The integration user (15 or 18 characters, a User id ``005…``): its changes are ``via_hub``.
    hub_user_id: str | None = None
    feature_request: FeatureRequestFields = FeatureRequestFields()
    #: True when the org has multiple currencies enabled (``CurrencyIsoCode`` then exists and is polled).
    multi_currency: bool = False
    poll_interval_s: float = Field(default=60.0, ge=10.0)
    #: The poller re-reads this far behind its watermark: a transaction committed late can carry a
    #: SystemModstamp older than records already seen.
    overlap_s: float = Field(default=60.0, ge=1.0, le=3600.0)
    page_size: int = Field(default=QUERY_BATCH_MAX, ge=QUERY_BATCH_MIN, le=QUERY_BATCH_MAX)
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    #: Where the CDC bridge starts a channel it has no stored replay id for: "all" retained change
    #: events (72 hours) or only "new" ones.
    cdc_initial_replay: Literal["all", "new"] = "all"
    #: PEM bundle to trust instead of the system CAs (the sandbox's throwaway CA).
    ca_file: str | None = None

    @field_validator("instance_url", "token_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://acme.my.salesforce.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry credentials, a query or a fragment")
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        if not re.fullmatch(r"\d{2,3}\.0", value) or int(value.split(".")[0]) < MIN_API_VERSION:
            raise ValueError(f"must look like {DEFAULT_API_VERSION!r} and be at least {MIN_API_VERSION}.0")
        return value

    @field_validator("client_name")
    @classmethod
    def _client_name(cls, value: str) -> str:
        if not _CLIENT_NAME.fullmatch(value):
            raise ValueError("1-40 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("hub_user_id")
    @classmethod
    def _user_id(cls, value: str | None) -> str | None:
        if value is not None and not _USER_ID.fullmatch(value):
            raise ValueError("must be a 15- or 18-character User id starting with 005")
        return value

    @field_validator("client_secret", "refresh_token")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("is empty: leave it unset instead")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> SalesforceSettings:
        if (self.client_secret is not None or self.refresh_token is not None) and self.client_id is None:
            raise ValueError("client_secret and refresh_token need client_id")
        if self.client_id is not None and self.client_secret is None and self.refresh_token is None:
            raise ValueError("client_id needs client_secret (client-credentials flow) or refresh_token")
        if self.client_id is not None and self.instance_url is None:
            raise ValueError("client_id is set but instance_url is not")
        return self

    @property
    def token_endpoint(self) -> str | None:
        if self.token_url is not None:
            return self.token_url
        return f"{self.instance_url}/services/oauth2/token" if self.instance_url else None

    @property
    def configured(self) -> bool:
        """True when API calls can be made (instance_url and a complete OAuth flow)."""
        return self.instance_url is not None and self.client_id is not None and (
            self.client_secret is not None or self.refresh_token is not None)
