"""Zendesk webhook signatures (``X-Zendesk-Webhook-Signature`` + ``…-Signature-Timestamp``).

https://developer.zendesk.com/documentation/webhooks/verifying/ : the signature is the base64
encoding of an HMAC-SHA256, keyed with the webhook's signing secret (the secret string as given,
not base64-decoded), over the timestamp header value immediately followed by the raw body.
Zendesk sets no replay window; :func:`verify` adds one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from datetime import datetime

SIGNATURE_HEADER = "X-Zendesk-Webhook-Signature"
TIMESTAMP_HEADER = "X-Zendesk-Webhook-Signature-Timestamp"
#: Ours (Zendesk has none): Slack's documented five minutes, a common choice for replay windows.
DEFAULT_WINDOW_S = 300.0

_DIGEST_BYTES = hashlib.sha256().digest_size
# Zendesk sends e.g. 2025-01-08T10:12:08Z; any ISO-8601 date-time with an explicit offset is accepted.
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})")


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Zendesk-Webhook-Signature`` value Zendesk sends for ``body`` at ``timestamp``."""
    if not secret:
        raise ValueError("empty signing secret")
    return base64.b64encode(_mac(secret, timestamp, body)).decode("ascii")


def verify(
    secret: bytes,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    *,
    now: float,
    window_s: float = DEFAULT_WINDOW_S,
) -> bool:
    """True only if ``signature`` signs ``timestamp + body`` under ``secret`` and the timestamp
    is within ``window_s`` seconds of ``now`` (epoch seconds) in either direction.

    Fails closed: a missing or malformed header, an unparsable or offset-less timestamp or an
    empty secret is False. The digests are compared in constant time. ``body`` must be the bytes
    as received, never re-serialised JSON.
    """
    if not secret or not timestamp or not signature:
        return False
    moment = parse_timestamp(timestamp)
    if moment is None or abs(now - moment) > window_s:
        return False
    try:
        given = base64.b64decode(signature.strip().encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error):
        return False
    if len(given) != _DIGEST_BYTES:
        return False
    return hmac.compare_digest(_mac(secret, timestamp, body), given)


def parse_timestamp(value: str) -> float | None:
    """Epoch seconds of an ISO-8601 timestamp with ``Z`` or an offset; None when malformed."""
    millis = parse_timestamp_ms(value)
    return None if millis is None else millis / 1000


def parse_timestamp_ms(value: str) -> int | None:
    """Epoch milliseconds (sub-millisecond digits dropped, exactly: no float rounding) of an
    ISO-8601 timestamp with ``Z`` or an offset; None when malformed."""
    match = _ISO.fullmatch(value.strip())
    if match is None:
        return None
    fraction, offset = match.group(1) or "", match.group(2)
    whole = value.strip()[: match.start(1)] if fraction else value.strip()[: match.start(2)]
    try:
        moment = datetime.fromisoformat(whole + ("+00:00" if offset == "Z" else offset))
    except ValueError:
        return None
    return int(moment.timestamp()) * 1000 + int(fraction[1:4].ljust(3, "0") if fraction else 0)


def _mac(secret: bytes, timestamp: str, body: bytes) -> bytes:
    return hmac.new(secret, timestamp.encode("utf-8") + body, hashlib.sha256).digest()
