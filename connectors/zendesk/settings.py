"""Settings of the Zendesk connector (validated at start-up; secrets are never printed).

API token auth: https://developer.zendesk.com/api-reference/introduction/security-and-auth/
Webhook signing secret: https://developer.zendesk.com/documentation/webhooks/verifying/
Export limits: https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from connectors.zendesk.signature import DEFAULT_WINDOW_S

#: Our own cap on a webhook body (Zendesk documents none for webhook requests).
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
#: "You can make up to 10 requests per minute to these endpoints" (incremental exports); the High
#: Volume API add-on raises it to 30.
EXPORT_REQUESTS_PER_MINUTE = 10
EXPORT_REQUESTS_PER_MINUTE_HIGH_VOLUME = 30
#: per_page of the cursor-based export: default and maximum 1000.
EXPORT_MAX_PER_PAGE = 1000


class ZendeskSettings(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: ``https://<subdomain>.zendesk.com`` (or the sandbox's ``http://127.0.0.1:<port>``).
    base_url: str | None = None
    #: The integration user's email; API calls authenticate as ``{email}/token:{api_token}``.
    email: str | None = None
    api_token: SecretStr | None = None
    #: The Zendesk user id of that integration user: its own changes are marked ``via_hub``.
    hub_user_id: str | None = None
    #: Signing secret of the webhook. None: signatures are not checked (unless required below).
    webhook_secret: SecretStr | None = None
    require_signature: bool = False
    #: Replay window for X-Zendesk-Webhook-Signature-Timestamp, either way from now.
    replay_window_s: float = Field(default=DEFAULT_WINDOW_S, gt=0, le=3600)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY_BYTES, ge=1024, le=32 * 1024 * 1024)
    #: How often ``switchboard poller zendesk`` runs the export (it never exceeds the per-minute limit).
    poll_interval_s: float = Field(default=60.0, ge=6.0)
    export_requests_per_minute: int = Field(
        default=EXPORT_REQUESTS_PER_MINUTE, ge=1, le=EXPORT_REQUESTS_PER_MINUTE_HIGH_VOLUME
    )
    export_per_page: int = Field(default=EXPORT_MAX_PER_PAGE, ge=1, le=EXPORT_MAX_PER_PAGE)
    timeout_s: float = Field(default=10.0, gt=0, le=120)
    #: PEM bundle to trust instead of the system CAs (the sandbox's throwaway CA).
    ca_file: str | None = None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL such as https://acme.zendesk.com")
        if parts.query or parts.fragment or parts.username or parts.password:
            raise ValueError("must not carry credentials, a query or a fragment")
        return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"

    @field_validator("hub_user_id")
    @classmethod
    def _numeric_id(cls, value: str | None) -> str | None:
        if value is not None and not (value.isdigit() and int(value) > 0):
            raise ValueError("must be a numeric Zendesk id")
        return value

    @field_validator("api_token", "webhook_secret")
    @classmethod
    def _secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value():
            raise ValueError("is empty: leave it unset instead")
        return value

    @model_validator(mode="after")
    def _combinations(self) -> ZendeskSettings:
        if self.require_signature and self.webhook_secret is None:
            raise ValueError("require_signature is true but webhook_secret is not set")
        if (self.email is None) != (self.api_token is None):
            raise ValueError("email and api_token go together")
        return self

    @property
    def configured(self) -> bool:
        """True when API calls can be made (base_url, email and api_token set)."""
        return self.base_url is not None and self.email is not None and self.api_token is not None
