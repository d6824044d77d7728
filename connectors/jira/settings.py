"""Settings of the Jira connector (validated at start-up; the secret is never printed).

Webhook secrets: https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

#: Our own cap on a webhook body (Atlassian documents no maximum); the captured issue payloads with
#: a hundred fields are under 20 KB.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: "start with an uppercase letter followed by one or more uppercase alphanumeric characters. The
#: maximum length is 10 characters." (REST v3 createProject). Data Center admins can change it.
DEFAULT_PROJECT_KEY_PATTERN = r"[A-Z][A-Z0-9]{1,9}"


class JiraSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``https://<site>.atlassian.net`` (or a Data Center base URL, context path included).
    site_url: str | None = None
    #: REST API credentials (Basic auth ``email:api_token``), for write-back and the catch-up poller.
    email: str | None = None
    api_token: SecretStr | None = None
    #: the API user's Jira profile time zone: JQL dates are read in it (the poller writes them in it)
    time_zone: str = "UTC"
    #: Secret of the admin webhook. None: signatures are not checked (unless required below).
    webhook_secret: SecretStr | None = None
    #: Refuse unsigned deliveries (production); needs ``webhook_secret``.
    require_signature: bool = False
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=32 * 1024 * 1024)
    #: Full-match pattern for project keys named in routing and configuration.
    project_key_pattern: str = DEFAULT_PROJECT_KEY_PATTERN

    @field_validator("site_url")
    @classmethod
    def _site_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://example.atlassian.net")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry credentials, a query or a fragment")
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("is empty: leave it unset to accept unsigned deliveries")
        return value

    @field_validator("project_key_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _signed(self) -> JiraSettings:
        if self.require_signature and self.webhook_secret is None:
            raise ValueError("require_signature is true but webhook_secret is not set")
        return self

    def is_project_key(self, key: str) -> bool:
        return re.fullmatch(self.project_key_pattern, key) is not None
