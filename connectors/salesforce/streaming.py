"""Change Data Capture over the Streaming API: a CometD long-polling client and the bridge that puts
change events on ``inbound.salesforce``.

Streaming API Developer Guide (https://developer.salesforce.com/docs/atlas.en-us.api_streaming.meta/api_streaming/):
"How the Client Connects", "Message Durability" (replay ids, 72-hour retention), "Handling Streaming
API Errors"; Change Data Capture Developer Guide
(https://developer.salesforce.com/docs/atlas.en-us.change_data_capture.meta/change_data_capture/):
channels ``/data/<Entity>ChangeEvent`` and ``/data/ChangeEvents``, gap and overflow events. The
protocol is Bayeux 1.0 over HTTP long polling: ``POST <instance>/cometd/<version>`` with a JSON
array of messages, the same OAuth bearer token as REST.

* ``/meta/handshake`` → a ``clientId``; Salesforce answers ``ext: {"replay": true}`` when the
  replay extension is on (API 37.0+).
* ``/meta/subscribe`` per channel with ``ext: {"replay": {<channel>: <replayId>}}``: the events
  after that id; ``-1`` only new ones, ``-2`` all retained ones. An id that left the retention is
  refused (``400::The replayId … was invalid``).
* ``/meta/connect`` returns the events due, or waits up to the server's advice (110 s) first.
* ``403::Unknown client`` (the server forgot us) → handshake and subscribe again from the stored
  ids; ``401::Authentication invalid`` → a new token, then the same.

The bridge keeps, per channel, the replay id of the last event it put on Kafka (and that event's
commit time) in the store, written after every batch, once every event of the batch was acked. A
crash re-sends at most one batch (event ids are stable, and the sales sides apply each record
version once), never skips one. When a stored id is refused, the object is re-read through SOQL
from the stored commit time and the channel subscribed from ``-2``.

Gap events (``GAP_CREATE`` … ``GAP_UNDELETE``) name records without their fields: those records are
re-read. Overflow events (``GAP_OVERFLOW``, no ids) and wildcard ids (``001*``) re-read every record
of the object changed since the event's commit time. Rereads go through the poller's SOQL and are
emitted as poll rows, the mapping's usual input.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import httpx

from connectors.errors import AuthError, ConnectorError, FatalError, RetryableError
from connectors.salesforce.events import GAP_TYPES, OVERFLOW_TYPE, cdc_envelope, change_event_body, is_wildcard

log = logging.getLogger(__name__)

REPLAY_NEW = -1
REPLAY_ALL = -2
#: The replay extension exists from API 37.0.
MIN_API_VERSION = 37
#: Salesforce's ``/meta/connect`` advice: it holds a connect up to 110 seconds.
SERVER_TIMEOUT_MS = 110_000
#: Read timeout margin over the server's hold time.
READ_MARGIN_S = 15.0
#: Our back-off after a failed round (seconds, doubled up to the cap).
BACKOFF_S, BACKOFF_CAP_S = 1.0, 60.0


class ReconnectNeeded(RetryableError):
    """The server forgot the client (``403::Unknown client``, ``reconnect: handshake``)."""

    code = "salesforce.cometd.unknown_client"


class ReplayIdInvalid(FatalError):
    """A stored replay id left the retention window (``400::The replayId … was invalid``)."""

    code = "salesforce.cometd.replay_invalid"

    def __init__(self, message: str, *, channel: str) -> None:
        super().__init__(message)
        self.channel = channel


Token = Callable[[bool], Awaitable[str]]


class CometdSession:
    """One Bayeux client over ``httpx``: handshake, subscribe, connect, disconnect. ``token(renew)``
    returns the OAuth access token (a new one when ``renew``); it is sent, never logged."""

    def __init__(self, http: httpx.AsyncClient, instance_url: str, api_version: str, token: Token) -> None:
        if int(api_version.split(".")[0]) < MIN_API_VERSION:
            raise ValueError(f"the Streaming API replay extension needs API {MIN_API_VERSION}.0 or later")
        self._http = http
        self.url = f"{instance_url.rstrip('/')}/cometd/{api_version}"
        self._token = token
        self._renew = False
        self.client_id: str | None = None
        self.server_timeout_ms = SERVER_TIMEOUT_MS
        self._id = 0

    async def handshake(self) -> None:
        self.client_id = None
        reply = await self._one({"channel": "/meta/handshake", "version": "1.0", "minimumVersion": "1.0",
                                 "supportedConnectionTypes": ["long-polling"], "ext": {"replay": True}}, "/handshake")
        if not reply.get("successful"):
            reason = ((reply.get("ext") or {}).get("sfdc") or {}).get("failureReason") or reply.get("error")
            self._fail(reply, f"handshake: {reason}")
        if not (reply.get("ext") or {}).get("replay"):
            raise FatalError("salesforce cometd: the server did not enable the replay extension",
                             code="salesforce.cometd.no_replay")
        self.client_id = reply["clientId"]
        timeout = (reply.get("advice") or {}).get("timeout")
        if isinstance(timeout, int) and timeout >= 0:
            self.server_timeout_ms = timeout

    async def subscribe(self, channel: str, replay_id: int) -> None:
        reply = await self._one({"channel": "/meta/subscribe", "clientId": self.client_id, "subscription": channel,
                                 "ext": {"replay": {channel: replay_id}}}, "/subscribe")
        if not reply.get("successful"):
            error = str(reply.get("error") or "")
            if error.startswith("400::The replayId"):
                raise ReplayIdInvalid(f"salesforce cometd: replay id {replay_id} of {channel} is no longer retained",
                                      channel=channel)
            self._fail(reply, f"subscribe {channel}: {error}")

    async def connect(self, *, wait: bool = True) -> list[dict[str, Any]]:
        """The events due (oldest first). ``wait=False`` asks the server to answer at once."""
        message: dict[str, Any] = {"channel": "/meta/connect", "clientId": self.client_id, "connectionType": "long-polling"}
        if not wait:
            message["advice"] = {"timeout": 0}
        replies = await self._post([message], "/connect")
        events = [r for r in replies if isinstance(r, dict) and not str(r.get("channel", "")).startswith("/meta/")]
        for reply in replies:
            if isinstance(reply, dict) and reply.get("channel") == "/meta/connect" and not reply.get("successful"):
                self._fail(reply, f"connect: {reply.get('error')}")
        return events

    async def disconnect(self) -> None:
        if self.client_id is None:
            return
        try:
            await self._post([{"channel": "/meta/disconnect", "clientId": self.client_id}], "/disconnect")
        except ConnectorError:
            pass
        self.client_id = None

    def _fail(self, reply: dict[str, Any], what: str) -> None:
        advice = (reply.get("advice") or {}).get("reconnect")
        text = f"salesforce cometd {what}"
        failure = str(((reply.get("ext") or {}).get("sfdc") or {}).get("failureReason") or reply.get("error") or "")
        if failure.startswith("401::"):
            self._renew = True
            raise AuthError(text, code="salesforce.cometd.auth")
        if advice == "handshake" or failure.startswith("403::Unknown client"):
            raise ReconnectNeeded(text)
        if advice == "none":
            raise FatalError(text, code="salesforce.cometd.refused")
        raise RetryableError(text, code="salesforce.cometd.failed")

    async def _one(self, message: dict[str, Any], suffix: str) -> dict[str, Any]:
        for reply in await self._post([message], suffix):
            if isinstance(reply, dict) and reply.get("channel") == message["channel"]:
                return reply
        raise RetryableError(f"salesforce cometd {message['channel']}: no answer", code="salesforce.cometd.unexpected")

    async def _post(self, messages: list[dict[str, Any]], suffix: str) -> list[Any]:
        for message in messages:
            self._id += 1
            message["id"] = str(self._id)
        token = await self._token(self._renew)
        self._renew = False
        hold_s = self.server_timeout_ms / 1000 if suffix == "/connect" and "advice" not in messages[0] else 0
        try:
            response = await self._http.post(self.url + suffix, json=messages, headers={"Authorization": f"Bearer {token}"},
                                             timeout=httpx.Timeout(30.0, read=hold_s + READ_MARGIN_S))
        except httpx.HTTPError as exc:
            raise RetryableError(f"salesforce cometd {suffix[1:]}: {type(exc).__name__}", code="salesforce.transport") from None
        if response.status_code == 401:
            self._renew = True
            raise AuthError(f"salesforce cometd {suffix[1:]}: HTTP 401", code="salesforce.cometd.auth")
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise RetryableError(f"salesforce cometd {suffix[1:]}: HTTP {response.status_code}", code="salesforce.cometd.http")
        if response.status_code >= 400:
            raise FatalError(f"salesforce cometd {suffix[1:]}: HTTP {response.status_code}", code="salesforce.cometd.http")
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, list):
            raise RetryableError(f"salesforce cometd {suffix[1:]}: not a Bayeux answer", code="salesforce.cometd.unexpected")
        return data


class StateStore(Protocol):
    async def get(self) -> dict[str, Any] | None: ...

    async def put(self, state: dict[str, Any]) -> None: ...


class Rereader(Protocol):
    def polls(self, sobject: str) -> bool: ...

    async def reread(self, sobject: str, ids: Sequence[str]) -> int: ...

    async def reread_since(self, sobject: str, since_ms: int) -> int: ...


class CdcBridge:
    """Change events of ``channels`` (``{channel: sObject}``) → ``emit(envelope)``, resuming from the
    replay ids in ``store`` (``{"channels": {channel: {"replay_id", "commit_ms"}}}``). ``initial``
    is where a channel without a stored id starts: ``REPLAY_ALL`` (every retained event) or
    ``REPLAY_NEW``."""

    def __init__(self, session: CometdSession, emit: Callable[[dict[str, Any]], Awaitable[Any]], store: StateStore,
                 rereader: Rereader, channels: dict[str, str], *, initial: int = REPLAY_ALL,
                 clock: Callable[[], float] = time.time, sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep) -> None:
        if initial not in (REPLAY_ALL, REPLAY_NEW):
            raise ValueError("initial must be REPLAY_ALL (-2) or REPLAY_NEW (-1)")
        self._session, self._emit, self._store, self._rereader = session, emit, store, rereader
        self._channels = dict(channels)
        self._initial = initial
        self._clock, self._sleep = clock, sleep
        self.state: dict[str, Any] = {"channels": {}}
        self.events = self.rereads = 0

    async def start(self) -> None:
        """Load the stored replay ids, handshake, subscribe every channel."""
        stored = await self._store.get() or {}
        channels = stored.get("channels") if isinstance(stored.get("channels"), dict) else {}
        self.state = {"channels": {c: {"replay_id": int(v["replay_id"]), "commit_ms": int(v.get("commit_ms") or 0)}
                                   for c, v in channels.items()
                                   if isinstance(v, dict) and isinstance(v.get("replay_id"), int)}}
        await self._session.handshake()
        for channel, sobject in self._channels.items():
            entry = self.state["channels"].get(channel)
            replay = entry["replay_id"] if entry else self._initial
            try:
                await self._session.subscribe(channel, replay)
            except ReplayIdInvalid:
                # beyond the retention: what changed since the last event we saw comes from SOQL
                since = entry["commit_ms"] if entry else 0
                log.warning("salesforce.cdc.replay-lost", extra={"channel": channel, "replay_id": replay})
                self.rereads += await self._rereader.reread_since(sobject, since)
                await self._session.subscribe(channel, REPLAY_ALL)
        log.info("salesforce.cdc.subscribed", extra={"channels": sorted(self._channels)})

    async def pump(self, *, wait: bool = True) -> int:
        """One connect: emit its events in order, do the rereads they ask for, then store the
        replay ids. Returns how many events came."""
        events = await self._session.connect(wait=wait)
        if not events:
            return 0
        received_at_ms = int(self._clock() * 1000)
        for message in events:
            channel = message.get("channel")
            data = message.get("data") if isinstance(message.get("data"), dict) else {}
            replay = (data.get("event") or {}).get("replayId")
            body = change_event_body(message) or {}
            header = body.get("ChangeEventHeader") if isinstance(body.get("ChangeEventHeader"), dict) else {}
            await self._emit(cdc_envelope(message, received_at_ms=received_at_ms))
            await self._reread(header)
            if isinstance(channel, str) and isinstance(replay, int):
                commit = header.get("commitTimestamp")
                entry = self.state["channels"].setdefault(channel, {"replay_id": replay, "commit_ms": 0})
                entry["replay_id"] = max(entry["replay_id"], replay)
                if isinstance(commit, int):
                    entry["commit_ms"] = max(entry["commit_ms"], commit)
        self.events += len(events)
        await self._store.put({"channels": {c: dict(v) for c, v in self.state["channels"].items()}})
        return len(events)

    async def _reread(self, header: dict[str, Any]) -> None:
        change_type, sobject = header.get("changeType"), header.get("entityName")
        ids = [i for i in header.get("recordIds") or [] if isinstance(i, str)]
        if change_type not in GAP_TYPES and change_type != OVERFLOW_TYPE and not any(is_wildcard(i) for i in ids):
            return
        if not isinstance(sobject, str) or not self._rereader.polls(sobject):
            log.info("salesforce.cdc.gap-ignored", extra={"sobject": sobject, "change_type": change_type})
            return
        if change_type in GAP_TYPES and not any(is_wildcard(i) for i in ids):
            count = await self._rereader.reread(sobject, ids)
        else:
            commit = header.get("commitTimestamp")
            count = await self._rereader.reread_since(sobject, commit if isinstance(commit, int) else 0)
        self.rereads += count
        log.info("salesforce.cdc.gap", extra={"sobject": sobject, "change_type": change_type, "reread": count})

    async def run_once(self) -> int:
        """Subscribe, emit everything due now, disconnect. Returns the events emitted."""
        await self.start()
        total = 0
        try:
            while (n := await self.pump(wait=False)):
                total += n
        finally:
            await self._session.disconnect()
        return total

    async def run_forever(self) -> None:
        """Long-poll until cancelled. A forgotten client or a transient failure re-subscribes from the
        stored replay ids after a back-off; a second authentication failure in a row, or a refusal
        for good, is raised."""
        backoff = BACKOFF_S
        auth_failures = 0
        started = False
        while True:
            try:
                if not started:
                    await self.start()
                    started = True
                n = await self.pump()
                if n:
                    log.info("salesforce.cdc.events", extra={"events": n})
                backoff, auth_failures = BACKOFF_S, 0
            except ReconnectNeeded:
                log.info("salesforce.cdc.rehandshake")
                started = False
            except AuthError as exc:
                auth_failures += 1
                if auth_failures > 1:
                    raise
                log.warning("salesforce.cdc.auth-renew", extra={"code": exc.code})
                started = False
            except ConnectorError as exc:
                if not exc.retryable:
                    raise
                log.warning("salesforce.cdc.failed", extra={"code": exc.code, "error": str(exc), "retry_in": backoff})
                started = False
                await self._sleep(backoff)
                backoff = min(BACKOFF_CAP_S, backoff * 2)
