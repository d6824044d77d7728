"""Hostile input against every endpoint of one receiver, with hypothesis ("Proof under load and
faults", part 3).

One receiver for the module, in this process: ``hub.receiver.Receiver`` behind an aiohttp
``AppRunner`` on a private event loop in a background thread, producing to the session's real
Kafka broker under a unique topic prefix. The tests talk to it over raw sockets, so that they can
send what no well-behaved client would: cut bodies, broken framing, undecodable header bytes,
chunked uploads that never end.

Properties checked on every reply: the status is the documented one (400/401/413, 202 for signed
but unsupported or stored), never 5xx; no canary secret in the status line, headers or body; the
receiver's handlers never crashed (no error logged by aiohttp or the receiver, which also catches
crashes on connections the client had already dropped); ``/health`` still answers; nothing
fetched any URL (a local trap server counts hits). Around every request the end offsets of every
declared topic are read with an aiokafka consumer: they move only when a request was validly
signed (or authorised) and stored, by exactly one record on the expected topic.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import logging
import re
import socket
import struct
import threading
import time
import urllib.request
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import orjson
import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage
from aiokafka import AIOKafkaConsumer, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hub.receiver as receiver_module
from hub.kafka_admin import ensure_topics
from hub.receiver import MAX_DEPTH, Receiver
from hub.settings import load_settings
from sandbox import jira as fake_jira
from sandbox import zendesk as fake_zendesk

pytestmark = pytest.mark.integration

JIRA_SECRET = "canary-jira-hostile-5e1d"
ZENDESK_SECRET = "canary-zendesk-hostile-93ab"
API_TOKEN = "canary-api-token-hostile-c4f2"
CANARIES = (JIRA_SECRET.encode(), ZENDESK_SECRET.encode(), API_TOKEN.encode())
LIMIT = 1024 * 1024  # the default max_body_bytes of both vendors, hence also aiohttp's client_max_size
WINDOW_S = 300
PATHS = {"jira": "/webhooks/jira", "zendesk": "/webhooks/zendesk", "links": "/api/links"}
SIG, ZSIG, ZTS = b"X-Hub-Signature", b"X-Zendesk-Webhook-Signature", b"X-Zendesk-Webhook-Signature-Timestamp"
AUTH = (b"Authorization", b"Bearer " + API_TOKEN.encode())

EXAMPLES = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
FEW = settings(EXAMPLES, max_examples=15)


# --- the receiver under test -----------------------------------------------------------------------


@dataclass
class Reply:
    status: int
    head: bytes  # status line and headers
    body: bytes


class _CrashLog(logging.Handler):
    """Errors logged by aiohttp or the receiver: an unhandled exception in a handler (a 500, even
    when the client is gone) or a failed store. The HTTP parser's own 400s are not crashes."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, BadHttpMessage):
            self.records.append(f"{record.name}: {record.getMessage()} {exc!r}")


class Hub:
    """The receiver, a URL trap and an offsets reader, on one event loop in a background thread."""

    def __init__(self, bootstrap: str) -> None:
        self.settings = load_settings(
            kafka={"bootstrap_servers": bootstrap, "topic_prefix": f"hx{uuid.uuid4().hex[:8]}.", "partitions": 2},
            jira={"webhook_secret": JIRA_SECRET, "require_signature": True},
            zendesk={"webhook_secret": ZENDESK_SECRET, "require_signature": True},
            receiver={"api_token": API_TOKEN},
        )
        self.crashes = _CrashLog()
        self.trap_hits: list[str] = []
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="hostile-receiver", daemon=True)

    def call(self, coro, timeout: float = 60.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> None:
        for name in ("aiohttp", "asyncio", "switchboard.receiver"):
            logging.getLogger(name).addHandler(self.crashes)
        self.thread.start()
        self.call(self._start(), timeout=120)

    async def _start(self) -> None:
        k = self.settings.kafka
        self.partitions = await ensure_topics(k.bootstrap_servers, k.topic_prefix, k.partitions, k.replication_factor)
        self.receiver = Receiver(self.settings)
        await self.receiver.start()
        self.runner = web.AppRunner(self.receiver.app(), access_log=None)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", 0).start()
        self.port = self.runner.addresses[0][1]

        async def trap(request: web.Request) -> web.Response:
            self.trap_hits.append(f"{request.method} {request.path_qs}")
            return web.json_response({})

        trap_app = web.Application()
        trap_app.router.add_route("*", "/{tail:.*}", trap)
        self.trap_runner = web.AppRunner(trap_app, access_log=None)
        await self.trap_runner.setup()
        await web.TCPSite(self.trap_runner, "127.0.0.1", 0).start()
        self.trap_url = f"http://127.0.0.1:{self.trap_runner.addresses[0][1]}"
        self.consumer = AIOKafkaConsumer(bootstrap_servers=k.bootstrap_servers)
        await self.consumer.start()

    def stop(self) -> None:
        async def _stop() -> None:
            await self.runner.cleanup()
            await self.trap_runner.cleanup()
            await self.receiver.stop()
            await self.consumer.stop()
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]  # connections left lingering
            for task in rest:
                task.cancel()
            await asyncio.gather(*rest, return_exceptions=True)

        try:
            self.call(_stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()
            for name in ("aiohttp", "asyncio", "switchboard.receiver"):
                logging.getLogger(name).removeHandler(self.crashes)

    def offsets(self) -> dict[str, int]:
        """Records ever stored on each declared topic (its partitions' end offsets summed), by short name."""
        ends = self.call(self.consumer.end_offsets([TopicPartition(t, p) for t, n in self.partitions.items() for p in range(n)]))
        totals = dict.fromkeys(self.partitions, 0)
        for tp, n in ends.items():
            totals[tp.topic] += n
        return {t.removeprefix(self.settings.kafka.topic_prefix): n for t, n in totals.items()}

    @contextmanager
    def stores(self, expected: dict[str, int] | None = None):
        """The declared topics grow by exactly ``expected`` records (default: not at all) inside.
        Crashes and fetches logged before are forgotten: each example answers for its own."""
        self.crashes.records, self.trap_hits = [], []
        before = self.offsets()
        yield
        after = self.offsets()
        moved = {t: after[t] - before[t] for t in after if after[t] != before[t]}
        assert moved == (expected or {}), f"records stored: {moved}, expected {expected or {}}"

    def assert_no_crash_and_no_fetch(self) -> None:
        """Since the last call: no handler crashed, no URL was fetched."""
        crashes, self.crashes.records = self.crashes.records, []
        fetched, self.trap_hits = self.trap_hits, []
        assert crashes == [], crashes
        assert fetched == [], f"the receiver fetched {fetched}"

    def healthy(self) -> bool:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=5) as resp:
            return resp.status == 200 and self.thread.is_alive()


@pytest.fixture(scope="module")
def hub(kafka_bootstrap: str):
    h = Hub(kafka_bootstrap)
    h.start()
    try:
        yield h
    finally:
        h.stop()


# --- a raw HTTP client: it sends exactly the bytes it is given --------------------------------------


def _head(path: str, headers, framing: bytes) -> bytes:
    lines = [b"POST " + path.encode() + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close",
             *(b"%s: %s" % h for h in headers), framing]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def _chunked(body: bytes, size: int, *, last: bool = True) -> bytes:
    chunks = (body[i:i + size] for i in range(0, len(body), size))
    return b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + (b"0\r\n\r\n" if last else b"")


def _read_reply(sock: socket.socket) -> Reply:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"the connection closed without a reply (got {buf!r})"
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    while length is None or len(body) < int(length[1]):
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return Reply(int(head.split(b" ", 2)[1]), head, body)


def exchange(hub: Hub, path: str, headers, request: bytes, *, framing: bytes | None = None) -> Reply:
    """Send the head and ``request`` (the body bytes, as framed), then read the reply. A send cut
    short by the server answering early is fine: the reply is what counts."""
    framing = framing or b"Content-Length: %d" % len(request)
    with socket.create_connection(("127.0.0.1", hub.port), timeout=15) as sock:
        try:
            sock.sendall(_head(path, headers, framing) + request)
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_reply(sock)


def post(hub: Hub, path: str, headers, body: bytes, *, chunk: int | None = None) -> Reply:
    if chunk:
        return exchange(hub, path, headers, _chunked(body, chunk), framing=b"Transfer-Encoding: chunked")
    return exchange(hub, path, headers, body)


def check(hub: Hub, reply: Reply, allowed: set[int]) -> None:
    hub.assert_no_crash_and_no_fetch()
    assert reply.status in allowed, f"status {reply.status}, expected one of {sorted(allowed)}: {reply.body[:300]!r}"
    for secret in CANARIES:
        assert secret not in reply.head + reply.body, "a canary secret is in the reply"
    assert hub.healthy()


# --- signing and the oracle ---------------------------------------------------------------------------


def iso(moment: float, tz: timezone = timezone.utc, timespec: str = "seconds") -> str:
    text = datetime.fromtimestamp(moment, tz).isoformat(timespec=timespec)
    return text.replace("+00:00", "Z") if tz is timezone.utc else text


def signed(vendor: str, body: bytes, *, ts: str | None = None) -> list[tuple[bytes, bytes]]:
    if vendor == "jira":
        return [(SIG, fake_jira.sign(JIRA_SECRET, body).encode())]
    if vendor == "zendesk":
        ts = ts or iso(time.time())
        return [(ZSIG, fake_zendesk.sign(ZENDESK_SECRET, ts, body).encode()), (ZTS, ts.encode())]
    return [AUTH]


def depth(value) -> int:
    """Nesting depth of a parsed value (iterative: orjson parses up to 1024 levels)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((c, d + 1) for c in (v.values() if isinstance(v, dict) else v))
    return deepest


def webhook_verdict(body: bytes) -> int:
    """What a validly signed ``body`` must get: 400 unless it is a JSON object at most MAX_DEPTH deep."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 400
    return 202 if isinstance(value, dict) and depth(value) <= MAX_DEPTH else 400


def link_verdict(body: bytes) -> int:
    """``{"ticket_id": "<ASCII digits>" | n >= 0, "issue": "<key or id>" | n, "op": "link" | "unlink"}``: 202, else 400."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return 400
    if not isinstance(value, dict) or "ticket_id" not in value or "issue" not in value:
        return 400
    ticket, issue, op = value["ticket_id"], value["issue"], value.get("op", "link")
    integer = (lambda v: isinstance(v, int) and not isinstance(v, bool))
    ticket_ok = (isinstance(ticket, str) and ticket.isascii() and ticket.isdigit()) or (integer(ticket) and ticket >= 0)
    issue_ok = (isinstance(issue, str) and issue.strip() != "") or integer(issue)
    return 202 if ticket_ok and issue_ok and op in ("link", "unlink") else 400


def link_topic(body: bytes) -> str:
    return "links.by_issue" if str(orjson.loads(body)["issue"]).isdigit() else "links.by_key"


def jira_event(hub: Hub, issue_id: int) -> bytes:
    """A real-shaped ``jira:issue_created`` whose every URL points at the trap."""
    event = fake_jira.issue_created(issue_id, f"OPS-{issue_id}", "OPS", f"see {hub.trap_url}/runbook", site=hub.trap_url)
    event["issue"]["fields"]["description"] = f"[dashboard|{hub.trap_url}/dash] ![img]({hub.trap_url}/i.png)"
    return fake_jira.encode(event)


def zendesk_event(hub: Hub, ticket_id: int) -> bytes:
    ticket = {"id": ticket_id, "url": f"{hub.trap_url}/api/v2/tickets/{ticket_id}.json", "subject": "printer on fire",
              "description": f"see {hub.trap_url}/kb", "status": "new", "priority": "high", "tags": [],
              "via": {"channel": "web"}, "requester_id": 7, "submitter_id": 7}
    return fake_zendesk.encode(fake_zendesk.ticket_created_event(ticket))


def valid_body(hub: Hub, vendor: str, n: int) -> bytes:
    if vendor == "jira":
        return jira_event(hub, n)
    if vendor == "zendesk":
        return zendesk_event(hub, n)
    return orjson.dumps({"ticket_id": str(n), "issue": f"OPS-{n}", "op": "link"})


# --- strategies -------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=16,
)
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\xe2\x82", b"\x80"]
BRACKETY = st.text(alphabet='[]{}"\\ a\u00e9\u2603', max_size=300)  # brackets, quotes and escapes inside strings


def nested(n: int, opener: bytes) -> bytes:
    return opener * n + b"1" + (b"]" if opener == b"[" else b"}") * n


def insert(body: bytes, at: int, junk: bytes) -> bytes:
    return body[:at] + junk + body[at:]


def hostile_bodies(base: bytes) -> st.SearchStrategy[bytes]:
    """Bodies around ``base`` (a valid event): cut short, not JSON, not an object, broken UTF-8,
    nested deep, brackets inside strings, random bytes. ``base`` itself is not among them."""
    return st.one_of(
        st.integers(0, len(base) - 1).map(lambda k: base[:k]),
        json_values.map(orjson.dumps),
        st.tuples(json_values.map(orjson.dumps), st.integers(0, 10**6), st.sampled_from(BAD_UTF8)).map(
            lambda t: insert(t[0], t[1] % (len(t[0]) + 1), t[2])),
        st.tuples(st.integers(MAX_DEPTH - 3, 3000), st.sampled_from([b"[", b'{"a":'])).map(lambda t: nested(*t)),
        st.tuples(st.integers(MAX_DEPTH - 3, MAX_DEPTH + 3), BRACKETY).map(
            lambda t: b'{"s":' * t[0] + orjson.dumps(t[1]) + b"}" * t[0]),
        st.binary(max_size=300),
        st.sampled_from([b"", b" ", b"{}", b"  {}\n", b"[]", b"null", b'"{}"', b"{", b"}", b"\xef\xbb\xbf{}"]),
    )


TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
#: framing, the signatures and the token, and the headers aiohttp refuses to see twice (Content-Type is added separately)
RESERVED = {"content-length", "transfer-encoding", "connection", "host", "expect", "content-encoding", "upgrade",
            "authorization", "x-hub-signature", "x-zendesk-webhook-signature", "x-zendesk-webhook-signature-timestamp",
            "content-type", "content-location", "content-range", "etag", "max-forwards", "server"}
KEPT = ["User-Agent", "X-Atlassian-Webhook-Flow", "X-Atlassian-Webhook-Retry", "X-Zendesk-Webhook-Id"]
CTL = bytes([*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F])
#: header values the HTTP parser accepts: visible ASCII, SP, HTAB and obs-text (bytes 0x80-0xFF, undecodable as UTF-8)
field_values = st.binary(max_size=120).map(lambda b: b.translate(None, CTL))
header_names = st.sampled_from(KEPT) | st.text(TCHAR, min_size=1, max_size=24).filter(lambda n: n.lower() not in RESERVED)
junk_headers = st.lists(st.tuples(header_names.map(str.encode), field_values), max_size=8, unique_by=lambda h: h[0].lower())
content_types = st.sampled_from([
    b"application/json", b"application/json; charset=utf-8", b"text/plain", b"application/x-www-form-urlencoded",
    b"multipart/form-data; boundary=x", b"application/json; charset=bogus", b"application/json; charset=utf-16",
    b"application/json; charset=hex", b'application/json; charset="', b"*/*", b"",
]) | field_values
dressing = st.tuples(content_types, junk_headers).map(lambda t: [(b"Content-Type", t[0]), *t[1]])
#: header lines the HTTP parser refuses with 400 (values over 8190 bytes, control bytes, bad names, bare LF, folding)
broken_header_lines = st.one_of(
    st.tuples(st.sampled_from([SIG, ZSIG, b"Authorization", b"User-Agent", b"X-Huge"]), st.integers(8191, 300_000)).map(
        lambda t: t[0] + b": " + b"a" * t[1]),
    st.sampled_from([b"X-A: a\x00b", b"X-A: a\x01b", b"X-A: a\x7fb", b"Bad Name: x", b"(x): y", b"B\xffad: x",
                     b"JustALine", b": x", b"X-A : x", b"X-A: a\nX-B: b", b"X-A: a\r\n  folded"]),
    st.just(b"\r\n".join(b"X-%d: a" % i for i in range(200))),
)


def _cut(body: bytes) -> st.SearchStrategy[bytes]:
    return st.integers(0, len(body) - 1).map(lambda k: body[:k]) if body else st.nothing()


def jira_forgeries(body: bytes) -> st.SearchStrategy[tuple[list, bytes]]:
    """(headers, body to send): anything but a valid X-Hub-Signature of the body sent."""
    good = fake_jira.sign(JIRA_SECRET, body).encode()

    def flip(i: int) -> bytes:
        return good[:i] + (b"1" if good[i:i + 1] == b"0" else b"0") + good[i + 1:]

    def method(name: str) -> bytes:
        return f"{name}={hmac.new(JIRA_SECRET.encode(), body, name).hexdigest()}".encode()

    return st.one_of(
        st.just([]),
        field_values.map(lambda v: [(SIG, v)]),
        st.integers(0, len(good) - 1).map(lambda k: [(SIG, good[:k])]),
        st.integers(len("sha256="), len(good) - 1).map(lambda i: [(SIG, flip(i))]),
        st.sampled_from([ZENDESK_SECRET, JIRA_SECRET + "x", JIRA_SECRET[:-1], JIRA_SECRET.upper()]).map(
            lambda s: [(SIG, fake_jira.sign(s, body).encode())]),
        st.sampled_from(["sha1", "sha512", "md5", "sha3_256"]).map(lambda m: [(SIG, method(m))]),
        st.binary(min_size=1, max_size=8).map(lambda extra: [(SIG, fake_jira.sign(JIRA_SECRET, body + extra).encode())]),
    ).map(lambda h: (h, body)) | _cut(body).map(lambda cut: ([(SIG, good)], cut))  # signed, then cut short


def zendesk_forgeries(body: bytes) -> st.SearchStrategy[tuple[list, bytes]]:
    """(headers, body to send): anything but a fresh, valid signature of timestamp + body."""
    now = time.time()
    ts = iso(now)
    good = fake_zendesk.sign(ZENDESK_SECRET, ts, body).encode()

    def sig(timestamp: str, secret: str = ZENDESK_SECRET, payload: bytes = body) -> list:
        return [(ZSIG, fake_zendesk.sign(secret, timestamp, payload).encode()), (ZTS, timestamp.encode())]

    stale = st.one_of(st.floats(WINDOW_S + 10, 20 * 365 * 86400), st.floats(-20 * 365 * 86400, -(WINDOW_S + 10)))
    return st.one_of(
        st.just([]),
        st.just([(ZSIG, good)]),
        st.just([(ZTS, ts.encode())]),
        field_values.map(lambda v: [(ZSIG, v), (ZTS, ts.encode())]),
        field_values.map(lambda v: [(ZSIG, good), (ZTS, v)]),
        st.integers(0, len(good) - 1).map(lambda k: [(ZSIG, good[:k]), (ZTS, ts.encode())]),
        st.sampled_from([JIRA_SECRET, ZENDESK_SECRET + "x", ZENDESK_SECRET[:-1]]).map(lambda s: sig(ts, secret=s)),
        stale.map(lambda d: sig(iso(now + d))),  # outside the replay window, either way, signed correctly
        st.sampled_from([ts.rstrip("Z"), str(int(now)), str(int(now * 1000)), ts.replace("T", " "), ts.lower()]).map(sig),
        st.just([(ZSIG, good), (ZTS, iso(now - 1).encode())]),  # signed another timestamp
        st.just([(ZSIG, hmac.new(ZENDESK_SECRET.encode(), ts.encode() + body, hashlib.sha256).hexdigest().encode()),
                 (ZTS, ts.encode())]),  # hex, not base64
        st.binary(min_size=1, max_size=8).map(lambda extra: sig(ts, payload=body + extra)),
    ).map(lambda h: (h, body)) | _cut(body).map(lambda cut: (sig(ts), cut))  # signed, then cut short


# --- the webhooks --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("vendor", ["jira", "zendesk"])
@EXAMPLES
@given(data=st.data())
def test_unsigned_or_badly_signed_requests_get_401_and_store_nothing(hub, vendor, data):
    base = valid_body(hub, vendor, data.draw(st.integers(1, 10**6), label="id"))
    body = data.draw(st.just(base) | hostile_bodies(base), label="body")
    headers, sent = data.draw((jira_forgeries if vendor == "jira" else zendesk_forgeries)(body), label="forgery")
    headers += data.draw(dressing, label="dressing")
    chunk = data.draw(st.none() | st.integers(1, 4096), label="chunk")
    with hub.stores(None):
        reply = post(hub, PATHS[vendor], headers, sent, chunk=chunk)
    check(hub, reply, {401})


@pytest.mark.parametrize("vendor", ["jira", "zendesk"])
@EXAMPLES
@given(data=st.data())
def test_signed_malformed_bodies_get_400_and_unsupported_ones_202_ignored(hub, vendor, data):
    base = valid_body(hub, vendor, data.draw(st.integers(1, 10**6), label="id"))
    body = data.draw(hostile_bodies(base), label="body")
    expected = webhook_verdict(body)
    headers = signed(vendor, body) + data.draw(dressing, label="dressing")
    with hub.stores(None):
        reply = post(hub, PATHS[vendor], headers, body, chunk=data.draw(st.none() | st.integers(1, 4096), label="chunk"))
    check(hub, reply, {expected})
    if expected == 202:
        assert orjson.loads(reply.body)["status"] == "ignored"


@pytest.mark.parametrize("vendor", ["jira", "zendesk"])
@EXAMPLES
@given(data=st.data())
def test_signed_events_with_junk_in_unsigned_headers_are_stored_exactly_once(hub, vendor, data):
    """User-Agent, Content-Type, delivery ids: not covered by the signature, copied into the envelope."""
    body = valid_body(hub, vendor, data.draw(st.integers(1, 10**6), label="id"))
    name = b"X-Atlassian-Webhook-Identifier" if vendor == "jira" else b"X-Zendesk-Webhook-Invocation-Id"
    delivery = uuid.uuid4().hex.encode() + data.draw(field_values, label="delivery id junk")  # unique: no duplicate
    headers = signed(vendor, body) + [(name, delivery)] + data.draw(dressing, label="dressing")
    with hub.stores({f"inbound.{vendor}": 1}):
        reply = post(hub, PATHS[vendor], headers, body)
    check(hub, reply, {202})
    assert orjson.loads(reply.body)["status"] == "accepted"


@EXAMPLES
@given(offset=st.floats(-20 * 365 * 86400, 20 * 365 * 86400), tz_minutes=st.integers(-23 * 60 - 59, 23 * 60 + 59),
       timespec=st.sampled_from(["seconds", "milliseconds", "microseconds"]))
def test_zendesk_signatures_outside_the_replay_window_are_refused(hub, offset, tz_minutes, timespec):
    """Correctly signed, in any offset's notation: stored within 300 s either way of now, 401 beyond."""
    if WINDOW_S - 10 < abs(offset) < WINDOW_S + 10:
        offset = 0.0  # too close to the edge to call
    stale = abs(offset) > WINDOW_S
    body = zendesk_event(hub, int(time.time() * 1000) % 10**9)
    ts = iso(time.time() + offset, timezone(timedelta(minutes=tz_minutes)), timespec)
    with hub.stores(None if stale else {"inbound.zendesk": 1}):
        reply = post(hub, PATHS["zendesk"], signed("zendesk", body, ts=ts), body)
    check(hub, reply, {401 if stale else 202})


@pytest.mark.parametrize("ts", ["0001-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59", "1970-01-01T00:00:00Z"])
def test_zendesk_extreme_timestamps_are_refused(hub, ts):
    body = zendesk_event(hub, 5)
    with hub.stores(None):
        check(hub, post(hub, PATHS["zendesk"], signed("zendesk", body, ts=ts), body), {401})


# --- the link API ------------------------------------------------------------------------------------------


def _bad_auth() -> st.SearchStrategy[list]:
    token = API_TOKEN.encode()
    return st.one_of(
        st.just([]),
        field_values.map(lambda v: [(b"Authorization", v)]),
        field_values.map(lambda v: [(b"Authorization", b"Bearer " + v)]),
        st.sampled_from([b"Bearer " + token[:-1], b"Bearer " + token + b"x", b"Bearer " + token.upper(), b"Bearer  " + token,
                         b"bearer " + token, b"Basic " + base64.b64encode(b"api:" + token), b"Bearer",
                         b"Bearer " + JIRA_SECRET.encode(), b"Token " + token]).map(lambda v: [(b"Authorization", v)]),
    )


ticket_ids = st.one_of(
    st.from_regex(r"[0-9]{1,12}", fullmatch=True), st.integers(-10, 10**12),
    st.text(st.characters(categories=["Nd"]), min_size=1, max_size=4),  # digits, mostly not ASCII ones: "²", "١٢", "１"
    st.sampled_from(["", " ", " 1", "-1", "1.0", "0x1", "1e3"]), json_values,
)
issues = st.one_of(st.sampled_from(["OPS-1", "10001", "", " ", "\t"]), st.integers(-10, 10**12), st.text(max_size=12), json_values)
link_shaped = st.fixed_dictionaries(
    {"ticket_id": ticket_ids, "issue": issues}, optional={"op": st.sampled_from(["link", "unlink", "LINK", "delete"]) | json_values},
).map(orjson.dumps)
link_bodies = st.one_of(link_shaped, link_shaped, hostile_bodies(b'{"ticket_id":"123","issue":"OPS-1","op":"link"}'))


@EXAMPLES
@given(auth=_bad_auth(), body=st.sampled_from([b'{"ticket_id":"123","issue":"OPS-1"}', b'{"ticket_id":"9","issue":"10001"}']) | link_bodies,
       dressing=dressing)
def test_link_api_without_the_token_gets_401_and_stores_nothing(hub, auth, body, dressing):
    with hub.stores(None):
        reply = post(hub, PATHS["links"], auth + dressing, body)
    check(hub, reply, {401})


@EXAMPLES
@given(body=link_bodies, dressing=dressing, chunk=st.none() | st.integers(1, 4096))
def test_link_api_with_the_token_accepts_only_well_formed_links(hub, body, dressing, chunk):
    expected = link_verdict(body)
    with hub.stores({link_topic(body): 1} if expected == 202 else None):
        reply = post(hub, PATHS["links"], [AUTH, *dressing], body, chunk=chunk)
    check(hub, reply, {expected})


# --- transport-level hostility: huge or broken headers, cut connections, oversized bodies --------------------


@FEW
@given(endpoint=st.sampled_from(list(PATHS)), line=broken_header_lines)
def test_huge_or_malformed_header_lines_get_400(hub, endpoint, line):
    body = valid_body(hub, endpoint, 77)
    head = _head(PATHS[endpoint], signed(endpoint, body), b"Content-Length: %d" % len(body)).replace(
        b"Connection: close", b"Connection: close\r\n" + line)
    with hub.stores(None), socket.create_connection(("127.0.0.1", hub.port), timeout=15) as sock:
        try:
            sock.sendall(head + body)
        except (BrokenPipeError, ConnectionResetError):
            pass
        reply = _read_reply(sock)
    check(hub, reply, {400})


@EXAMPLES
@given(endpoint=st.sampled_from(list(PATHS)), sent=st.integers(0, 2000), missing=st.integers(1, 10**6),
       chunked=st.booleans(), abort=st.booleans())
def test_connections_cut_mid_body_crash_nothing_and_store_nothing(hub, endpoint, sent, missing, chunked, abort):
    """Signed (or authorised) requests whose body never ends: the client half-closes or resets. The
    declared length stays under the limit, so this is the read path, not the size rung."""
    body = valid_body(hub, endpoint, 88)
    body = (body * (sent // len(body) + 1))[:sent]
    if chunked:
        framing, request = b"Transfer-Encoding: chunked", _chunked(body, 100, last=False)
    else:
        framing, request = b"Content-Length: %d" % (sent + missing), body
    with hub.stores(None):
        sock = socket.create_connection(("127.0.0.1", hub.port), timeout=15)
        sock.sendall(_head(PATHS[endpoint], signed(endpoint, body), framing) + request)
        if abort:  # RST instead of FIN
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            sock.shutdown(socket.SHUT_WR)
            sock.settimeout(5)
            try:
                status = sock.recv(100)[:12]
            except ConnectionResetError:
                status = b""
            assert status in (b"", b"HTTP/1.1 400", b"HTTP/1.0 400"), status
        sock.close()
        time.sleep(0.02)  # let the handler see the cut before the crash check
    assert hub.healthy()
    time.sleep(0.02)
    hub.assert_no_crash_and_no_fetch()


@FEW
@given(endpoint=st.sampled_from(list(PATHS)), extra=st.integers(1, LIMIT), mode=st.sampled_from(["declared", "chunked", "gzip"]),
       chunk=st.integers(1024, 256 * 1024), sign_it=st.booleans())
def test_oversized_bodies_get_413_and_store_nothing(hub, endpoint, extra, mode, chunk, sign_it):
    """Over the limit by 1 byte to 1 MiB; at most LIMIT + 64 KiB of it is ever sent: the 413 comes first."""
    size, cap = LIMIT + extra, LIMIT + 64 * 1024
    body = b"x" * size
    headers = signed(endpoint, body) if sign_it or endpoint == "links" else []
    with hub.stores(None):
        if mode == "declared":
            reply = exchange(hub, PATHS[endpoint], headers, body[:cap], framing=b"Content-Length: %d" % size)
        elif mode == "chunked":
            reply = exchange(hub, PATHS[endpoint], headers, _chunked(body[:cap], chunk, last=size <= cap),
                             framing=b"Transfer-Encoding: chunked")
        else:  # a few KiB that inflate past the limit
            reply = post(hub, PATHS[endpoint], headers + [(b"Content-Encoding", b"gzip")], gzip.compress(body))
    check(hub, reply, {413})


class _ParseSpy:
    """Stands in for the receiver's ``orjson`` module and records the size of every body parsed."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def loads(self, data):
        self.calls.append(len(data))
        return orjson.loads(data)

    def __getattr__(self, name: str):
        return getattr(orjson, name)


@pytest.mark.parametrize("endpoint", list(PATHS))
def test_a_2mb_body_is_refused_413_before_it_is_read(hub, endpoint, monkeypatch):
    """Content-Length path: the webhooks answer before a single body byte arrives (the link API, which
    checks only aiohttp's client_max_size, after LIMIT + 64 KiB). Chunked path: after LIMIT + 64 KiB,
    with the rest of the 2 MB and the final chunk never sent. The JSON parser is never called."""
    spy = _ParseSpy()
    monkeypatch.setattr(receiver_module, "orjson", spy)
    auth = [AUTH] if endpoint == "links" else []
    sent = LIMIT + 64 * 1024 if endpoint == "links" else 0
    with hub.stores(None):
        reply = exchange(hub, PATHS[endpoint], auth, b"x" * sent, framing=b"Content-Length: %d" % (2 * LIMIT))
        check(hub, reply, {413})
        reply = exchange(hub, PATHS[endpoint], auth, _chunked(b"[" * (LIMIT + 64 * 1024), 64 * 1024, last=False),
                         framing=b"Transfer-Encoding: chunked")
        check(hub, reply, {413})
    assert spy.calls == []


@pytest.mark.parametrize("vendor", ["jira", "zendesk"])
def test_nesting_depth_is_refused_before_parsing(hub, vendor, monkeypatch):
    assert MAX_DEPTH == 64  # the documented limit, well under orjson's own 1024
    spy = _ParseSpy()
    monkeypatch.setattr(receiver_module, "orjson", spy)
    cases = [
        (nested(MAX_DEPTH, b'{"a":'), 202, True),        # at the limit: parsed, ignored
        (nested(MAX_DEPTH + 1, b'{"a":'), 400, False),   # orjson would take it (it stops at 1024): refused unparsed
        (b"[" * (LIMIT - 1), 400, False),                # a megabyte of brackets: refused unparsed
        (orjson.dumps({"s": "[" * 5000 + '\\"{' * 100}), 202, True),  # brackets inside a string are not nesting
    ]
    for body, status, parsed in cases:
        spy.calls.clear()
        with hub.stores(None):
            reply = post(hub, PATHS[vendor], signed(vendor, body), body)
        check(hub, reply, {status})
        assert spy.calls == ([len(body)] if parsed else []), (body[:40], spy.calls)


def test_valid_requests_are_stored_and_urls_in_them_never_fetched(hub):
    """The control: validly signed deliveries do move the offsets; their URLs (all at the trap) are not fetched."""
    n = int(time.time() * 1000) % 10**9
    for endpoint, topic in (("jira", "inbound.jira"), ("zendesk", "inbound.zendesk"), ("links", "links.by_key")):
        body = valid_body(hub, endpoint, n)
        assert hub.trap_url.encode() in body or endpoint == "links"
        with hub.stores({topic: 1}):
            reply = post(hub, PATHS[endpoint], signed(endpoint, body), body)
        check(hub, reply, {202})
    time.sleep(0.5)
    hub.assert_no_crash_and_no_fetch()
    with urllib.request.urlopen(f"{hub.trap_url}/_probe", timeout=5):  # the trap does count hits
        pass
    with pytest.raises(AssertionError, match="fetched"):
        hub.assert_no_crash_and_no_fetch()
