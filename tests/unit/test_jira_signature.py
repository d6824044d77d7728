"""X-Hub-Signature verification against the shared vectors, known HMAC values and our fixtures."""

from __future__ import annotations

import hashlib
import hmac
import json
from pathlib import Path

import pytest

from connectors.jira import signature
from connectors.jira.signature import sign, verify

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "contracts" / "jira"
VECTORS_FILE = SHARED / "signature-test-vectors.json"
FIXTURES = REPO / "tests" / "fixtures" / "jira"
#: The secret the signed fixtures (``*.headers.json`` with X-Hub-Signature) were signed with.
FIXTURE_SECRET = b"fixture-secret-do-not-use"


def _shared_vectors():
    if not VECTORS_FILE.exists():
        return [pytest.param(None, id="shared", marks=pytest.mark.skip(reason=f"{VECTORS_FILE} absent"))]
    vectors = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]
    return [pytest.param(v, id=v["raw_body_file"]) for v in vectors]


@pytest.mark.parametrize("vector", _shared_vectors())
def test_shared_vectors(vector):
    body = (SHARED / vector["raw_body_file"]).read_bytes()
    assert hashlib.sha256(body).hexdigest() == vector["raw_body_sha256"], "captured body changed"
    secret = vector["secret"].encode()
    header = vector["X-Hub-Signature"]
    assert sign(secret, body) == header
    assert verify(secret, body, header)
    assert not verify(secret + b"x", body, header)
    assert not verify(secret, body + b" ", header)
    # re-serialised JSON is not the signed body
    assert not verify(secret, json.dumps(json.loads(body)).encode(), header)


# HMAC-SHA256 values published widely (e.g. the Wikipedia HMAC article), computed independently of us.
KNOWN = [
    (b"key", b"The quick brown fox jumps over the lazy dog",
     "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"),
    (b"key", b"", "5d5d139563c95b5967b9bd9a8c9b233a9dedb45072794cd232dc1b74832607d0"),
]


@pytest.mark.parametrize(("secret", "body", "digest"), KNOWN)
def test_known_values(secret, body, digest):
    assert sign(secret, body) == f"sha256={digest}"
    assert verify(secret, body, f"sha256={digest}")
    assert verify(secret, body, f"SHA256={digest.upper()}")
    assert verify(secret, body, f"  sha256={digest}\t")


def _signed_fixtures():
    out = []
    for headers_file in sorted(FIXTURES.glob("*.headers.json")):
        headers = json.loads(headers_file.read_bytes())
        if "X-Hub-Signature" in headers:
            body_file = headers_file.with_name(headers_file.name.replace(".headers.json", ".json"))
            out.append(pytest.param(body_file, headers["X-Hub-Signature"], id=body_file.name))
    return out


def test_some_fixtures_are_signed():
    assert len(_signed_fixtures()) >= 2


@pytest.mark.parametrize(("body_file", "header"), _signed_fixtures())
def test_fixture_signatures_hold_over_the_exact_bytes(body_file, header):
    body = body_file.read_bytes()
    assert verify(FIXTURE_SECRET, body, header)
    assert not verify(FIXTURE_SECRET, json.dumps(json.loads(body), ensure_ascii=False).encode(), header)
    assert not verify(FIXTURE_SECRET, body.replace(b"10231", b"10232", 1), header)


BODY = b'{"webhookEvent":"jira:issue_updated"}'
SECRET = b"s3cr3t"
GOOD = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "sha256",
        "sha256=",
        f"={GOOD}",
        GOOD,
        f"sha256:{GOOD}",
        f"sha256={GOOD[:-2]}",
        f"sha256={GOOD}00",
        f"sha256={GOOD[:-1]}g",
        f"sha256={GOOD},sha256={GOOD}",
        f"sha256 = {GOOD}",
        "sha256=" + "٣" * 64,  # non-ASCII digits must not reach compare_digest
        f"sha1={hmac.new(SECRET, BODY, hashlib.sha1).hexdigest()}",  # right MAC, method not accepted
        f"sha512={hmac.new(SECRET, BODY, hashlib.sha512).hexdigest()}",
        f"md5={hmac.new(SECRET, BODY, hashlib.md5).hexdigest()}",
        f"sha256={hmac.new(SECRET + b'!', BODY, hashlib.sha256).hexdigest()}",
    ],
)
def test_rejects_missing_malformed_and_wrong_headers(header):
    assert verify(SECRET, BODY, header) is False


def test_accepts_the_good_header():
    assert verify(SECRET, BODY, f"sha256={GOOD}") is True


def test_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signature.hmac, "compare_digest", spy)
    assert verify(SECRET, BODY, f"sha256={GOOD.upper()}")
    assert not verify(SECRET, BODY, f"sha256={'0' * 64}")
    assert len(calls) == 2


def test_empty_secret_cannot_sign_and_never_verifies():
    with pytest.raises(ValueError):
        sign(b"", BODY)
    assert verify(b"", BODY, f"sha256={hmac.new(b'', BODY, hashlib.sha256).hexdigest()}") is False
