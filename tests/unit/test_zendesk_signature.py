"""X-Zendesk-Webhook-Signature: the shared vectors, independent HMAC values, our signed fixtures,
malformed headers and the replay window."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

import pytest

from connectors.zendesk import signature
from connectors.zendesk.signature import parse_timestamp, sign, verify

REPO = Path(__file__).resolve().parents[2]
VECTORS_FILE = REPO.parent / "shared" / "contracts" / "zendesk" / "signature-test-vectors.json"
FIXTURES = REPO / "tests" / "fixtures" / "zendesk"
#: The secret the fixtures' ``.headers.json`` were signed with.
FIXTURE_SECRET = b"fixture-signing-secret-do-not-use"

TS = "2025-01-08T10:12:08Z"
TS_EPOCH = 1736331128.0
BODY = b'{"type":"zen:event-type:ticket.created","detail":{"id":"5158"}}'
SECRET = b"s3cr3t"
GOOD = base64.b64encode(hmac.new(SECRET, TS.encode() + BODY, hashlib.sha256).digest()).decode()


def _shared_vectors():
    if not VECTORS_FILE.exists():
        return [pytest.param(None, id="shared", marks=pytest.mark.skip(reason=f"shared vectors absent: {VECTORS_FILE}"))]
    vectors = json.loads(VECTORS_FILE.read_text(encoding="utf-8"))["vectors"]
    return [pytest.param(v, id=f"shared-{i}") for i, v in enumerate(vectors)]


@pytest.mark.parametrize("vector", _shared_vectors())
def test_shared_vectors(vector):
    secret = vector["signing_secret"].encode()  # used as given, not base64-decoded
    timestamp = vector["X-Zendesk-Webhook-Signature-Timestamp"]
    body = vector["raw_body"].encode("utf-8")
    expected = vector["X-Zendesk-Webhook-Signature"]
    now = parse_timestamp(timestamp)
    assert sign(secret, timestamp, body) == expected
    assert verify(secret, timestamp, body, expected, now=now)
    assert not verify(base64.b64decode(secret), timestamp, body, expected, now=now)
    assert not verify(secret, timestamp, body + b" ", expected, now=now)
    assert not verify(secret, timestamp, json.dumps(json.loads(body)).encode(), expected, now=now)


def test_known_value_computed_independently():
    # printf '%s%s' "2025-01-08T10:12:08Z" "$BODY" | openssl dgst -sha256 -hmac s3cr3t -binary | base64
    assert sign(SECRET, TS, BODY) == GOOD
    assert verify(SECRET, TS, BODY, GOOD, now=TS_EPOCH)
    assert len(base64.b64decode(GOOD)) == 32


def test_timestamp_is_part_of_the_signed_bytes():
    assert not verify(SECRET, "2025-01-08T10:12:09Z", BODY, GOOD, now=TS_EPOCH)
    assert sign(SECRET, TS, BODY) != sign(SECRET, "2025-01-08T10:12:09Z", BODY)
    # bodiless requests sign the timestamp alone
    assert sign(SECRET, TS, b"") == base64.b64encode(hmac.new(SECRET, TS.encode(), hashlib.sha256).digest()).decode()


def _signed_fixtures():
    out = []
    for headers_file in sorted(FIXTURES.glob("*.headers.json")):
        headers = json.loads(headers_file.read_bytes())
        body_file = headers_file.with_name(headers_file.name.replace(".headers.json", ".json"))
        out.append(pytest.param(body_file, headers, id=body_file.name))
    return out


def test_some_fixtures_are_signed():
    assert len(_signed_fixtures()) >= 4


@pytest.mark.parametrize(("body_file", "headers"), _signed_fixtures())
def test_fixture_signatures_hold_over_the_exact_bytes(body_file, headers):
    body = body_file.read_bytes()
    timestamp = headers["X-Zendesk-Webhook-Signature-Timestamp"]
    header = headers["X-Zendesk-Webhook-Signature"]
    now = parse_timestamp(timestamp) + 30
    assert verify(FIXTURE_SECRET, timestamp, body, header, now=now)
    assert not verify(FIXTURE_SECRET, timestamp, json.dumps(json.loads(body), ensure_ascii=False).encode(), header, now=now)
    assert not verify(FIXTURE_SECRET, timestamp, body.replace(b"482", b"483", 1), header, now=now)


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(0, True), (299.9, True), (-299.9, True), (300.1, False), (-300.1, False), (86_400, False), (-86_400, False)],
)
def test_replay_window_both_ways(offset, ok):
    assert verify(SECRET, TS, BODY, GOOD, now=TS_EPOCH + offset) is ok


def test_window_is_configurable():
    assert verify(SECRET, TS, BODY, GOOD, now=TS_EPOCH + 1000, window_s=1200)
    assert not verify(SECRET, TS, BODY, GOOD, now=TS_EPOCH + 10, window_s=5)


@pytest.mark.parametrize(
    ("timestamp", "header"),
    [
        (TS, None),
        (TS, ""),
        (None, GOOD),
        ("", GOOD),
        (TS, GOOD[:-4]),
        (TS, GOOD + "AAAA"),
        (TS, GOOD.replace("=", "")),
        (TS, "not base64!"),
        (TS, "٣" * 44),  # non-ASCII must not reach the decoder or compare_digest
        (TS, f"sha256={GOOD}"),
        (TS, base64.b64encode(hmac.new(SECRET, TS.encode() + BODY, hashlib.sha1).digest()).decode()),
        (TS, base64.b64encode(hmac.new(SECRET + b"!", TS.encode() + BODY, hashlib.sha256).digest()).decode()),
        ("1736331128", GOOD),  # epoch seconds are not what Zendesk sends
        ("2025-01-08T10:12:08", GOOD),  # no offset
        ("2025-01-08 10:12:08Z", GOOD),
        ("yesterday", GOOD),
    ],
)
def test_rejects_missing_malformed_and_wrong(timestamp, header):
    assert verify(SECRET, timestamp, BODY, header, now=TS_EPOCH) is False


def test_header_whitespace_is_tolerated():
    assert verify(SECRET, TS, BODY, f" {GOOD}\t", now=TS_EPOCH)


@pytest.mark.parametrize(
    ("text", "epoch"),
    [
        ("2025-01-08T10:12:08Z", TS_EPOCH),
        ("2025-01-08T11:12:08+01:00", TS_EPOCH),
        ("2025-01-08T10:12:07.672717030Z", TS_EPOCH - 1 + 0.672717),
        ("2025-01-08T10:12:08.5Z", TS_EPOCH + 0.5),
        ("2025-02-30T10:12:08Z", None),
    ],
)
def test_parse_timestamp(text, epoch):
    parsed = parse_timestamp(text)
    assert parsed == pytest.approx(epoch) if epoch is not None else parsed is None


def test_comparison_is_constant_time(monkeypatch):
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signature.hmac, "compare_digest", spy)
    assert verify(SECRET, TS, BODY, GOOD, now=TS_EPOCH)
    assert not verify(SECRET, TS, BODY, base64.b64encode(b"\0" * 32).decode(), now=TS_EPOCH)
    assert len(calls) == 2


def test_empty_secret_cannot_sign_and_never_verifies():
    with pytest.raises(ValueError):
        sign(b"", TS, BODY)
    empty = base64.b64encode(hmac.new(b"", TS.encode() + BODY, hashlib.sha256).digest()).decode()
    assert verify(b"", TS, BODY, empty, now=TS_EPOCH) is False
