"""Jira webhook signatures (``X-Hub-Signature: sha256=<hex>``).

Jira Cloud signs admin webhooks registered with a secret WebSub-style: an HMAC-SHA256 of the raw
request body keyed with the secret, sent as ``<method>=<hex digest>``.
https://developer.atlassian.com/cloud/jira/platform/webhooks/#secure-admin-webhooks
"""

from __future__ import annotations

import hashlib
import hmac
import re

HEADER = "X-Hub-Signature"

# Only the method Jira sends today. WebSub also allows sha1/sha384/sha512; accepting a weaker
# method would let an attacker choose the algorithm, so anything else is rejected.
_METHODS = {"sha256": hashlib.sha256}
_HEADER_RE = re.compile(r"(?P<method>[A-Za-z0-9]+)=(?P<digest>[0-9A-Fa-f]+)")


def sign(secret: bytes, body: bytes) -> str:
    """Return the header value Jira would send for ``body``: ``"sha256=<lowercase hex>"``."""
    if not secret:
        raise ValueError("empty webhook secret")
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify(secret: bytes, body: bytes, header: str | None) -> bool:
    """True only if ``header`` is a well-formed signature of the raw ``body`` under ``secret``.

    A missing or malformed header, an unknown method or an empty secret is False (fail closed: this
    runs inside the request); the digest comparison runs in constant time. ``body`` must be the
    bytes as received, never re-serialised JSON.
    """
    if not secret or not header:
        return False
    match = _HEADER_RE.fullmatch(header.strip())
    if match is None:
        return False
    digestmod = _METHODS.get(match["method"].lower())
    if digestmod is None:
        return False
    expected = hmac.new(secret, body, digestmod).hexdigest()
    return hmac.compare_digest(expected.encode("ascii"), match["digest"].lower().encode("ascii"))
