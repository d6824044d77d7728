"""Typed errors for everything that crosses a vendor boundary.

Promise: every failure of an outbound call is raised as exactly one of these classes, decided once,
where the transport answer is read (``connectors/<vendor>/client.py``). The delivery pipeline
decides what to do from the class alone and never looks at status codes.

Messages must never contain a secret (tokens, routing keys, signing secrets). Build messages from
the vendor's error code and the operation name, not from request objects.
"""

from __future__ import annotations


class ConnectorError(Exception):
    """Base class. ``retryable`` tells the retry policy whether another attempt may succeed."""

    retryable: bool = False
    #: stable short code for logs, metrics and dead letters, e.g. ``"slack.channel_not_found"``
    code: str = "error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code

    def __str__(self) -> str:  # the message only: never the request or its headers
        return self.args[0] if self.args else self.code


class RetryableError(ConnectorError):
    """A transient failure: 5xx, timeout, dropped connection. Try again after a back-off."""

    retryable = True
    code = "retryable"


class RateLimitedError(RetryableError):
    """The vendor said slow down (429, or Salesforce's 403 REQUEST_LIMIT_EXCEEDED).

    ``retry_after`` is the vendor's wait in seconds when it gave one, else ``None`` (the policy
    then uses its own back-off). No request to the same target may be sent before it elapses.
    """

    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float | None = None, code: str | None = None) -> None:
        super().__init__(message, code=code)
        self.retry_after = retry_after


class AuthError(ConnectorError):
    """Credentials are missing, wrong or revoked. Not retried: an admin must act."""

    code = "auth"


class FatalError(ConnectorError):
    """The vendor refused this request for good (400, unknown channel, invalid routing key)."""

    code = "fatal"


class UnsupportedEvent(ConnectorError):
    """An inbound event type the connector does not handle. Answered 2xx and ignored."""

    code = "unsupported"


class MappingError(ConnectorError):
    """An inbound payload that cannot be turned into a canonical record.

    ``path`` names the part of the payload that broke (``"issue.fields.project"``).
    Such events go to the dead-letter topic with this message as the reason.
    """

    code = "mapping"

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.path = path
