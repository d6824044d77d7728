"""A thin Slack Web API client: slack_sdk's AsyncWebClient plus one place where failures get typed.

Slack docs: https://api.slack.com/web , errors https://api.slack.com/apis/rate-limits .
Slack answers HTTP 200 with ``ok: false`` for almost every error and 429 + ``Retry-After`` for
rate limits; slack_sdk raises ``SlackApiError`` for both. Nothing here retries: the delivery
pipeline does.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from slack_sdk.errors import SlackApiError, SlackRequestError
from slack_sdk.web.async_client import AsyncWebClient

from connectors.errors import AuthError, ConnectorError, FatalError, RateLimitedError, RetryableError

#: ok:false errors meaning the token is bad: an admin must act
AUTH_ERRORS = frozenset({"not_authed", "invalid_auth", "account_inactive", "token_revoked", "token_expired", "no_permission", "missing_scope", "not_allowed_token_type", "ekm_access_denied"})
#: ok:false errors that are Slack's own trouble: try again later
RETRYABLE_ERRORS = frozenset({"internal_error", "fatal_error", "service_unavailable", "request_timeout", "team_added_to_org"})
#: connections kept open to the Web API (the delivery agent's concurrency is the real bound)
MAX_CONNECTIONS = 64


def classify(exc: BaseException, method: str) -> ConnectorError:
    """Turn whatever slack_sdk or the transport raised into one typed error (no secrets in it)."""
    if isinstance(exc, SlackApiError):
        resp = exc.response
        status = getattr(resp, "status_code", 200)
        error = (resp.get("error") if hasattr(resp, "get") else None) or "unknown_error"
        if status == 429 or error == "ratelimited":
            retry_after = _retry_after(resp)
            return RateLimitedError(f"slack {method}: rate limited (retry after {retry_after}s)", retry_after=retry_after, code="slack.ratelimited")
        if status >= 500:
            return RetryableError(f"slack {method}: HTTP {status}", code=f"slack.http_{status}")
        if error in AUTH_ERRORS:
            return AuthError(f"slack {method}: {error}: check the bot token and its scopes", code=f"slack.{error}")
        if error in RETRYABLE_ERRORS:
            return RetryableError(f"slack {method}: {error}", code=f"slack.{error}")
        return FatalError(f"slack {method}: {error}", code=f"slack.{error}")
    if isinstance(exc, (asyncio.TimeoutError, aiohttp.ClientError, ConnectionError, SlackRequestError)):
        return RetryableError(f"slack {method}: {type(exc).__name__}", code="slack.transport")
    return RetryableError(f"slack {method}: unexpected {type(exc).__name__}", code="slack.unexpected")


def _retry_after(resp: Any) -> float | None:
    headers = getattr(resp, "headers", None) or {}
    for name in ("Retry-After", "retry-after"):
        value = headers.get(name) if hasattr(headers, "get") else None
        if value is not None:
            if isinstance(value, list):
                value = value[0]
            try:
                return max(0.0, float(value))
            except ValueError:
                return None
    return None


class SlackClient:
    """The few Web API methods the hub uses, each raising only :mod:`connectors.errors` types."""

    def __init__(self, token: str, base_url: str = "https://slack.com/api/", timeout_s: float = 10.0, ssl_context=None) -> None:
        if not base_url.endswith("/"):
            base_url += "/"
        # retry_handlers=[]: slack_sdk's default handler re-sends a request whose connection dropped,
        # which posts a message twice when Slack had accepted it. Retries are the pipeline's job.
        self._web = AsyncWebClient(token=token, base_url=base_url, timeout=int(max(1, timeout_s)), ssl=ssl_context, retry_handlers=[])
        self._timeout_s = timeout_s
        self._channel_ids: dict[str, str] = {}

    def _session(self) -> None:
        # without a session of its own, slack_sdk opens a new aiohttp session (a new TLS connection)
        # for every call: about 350 posts/s here against 2,000 over kept-alive connections. Created
        # on first use, inside the running loop. aiohttp never re-sends a POST by itself.
        session = self._web.session
        if session is None or session.closed:
            self._web.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self._timeout_s),
                                                      connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS))

    async def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        self._session()
        try:
            resp = await getattr(self._web, method.replace(".", "_"))(**kwargs)
        except BaseException as exc:  # noqa: BLE001 - re-raised typed
            if isinstance(exc, (KeyboardInterrupt, SystemExit, asyncio.CancelledError)):
                raise
            raise classify(exc, method) from None
        return resp.data if hasattr(resp, "data") else dict(resp)

    async def post_message(self, channel: str, text: str, *, blocks: list | None = None, thread_ts: str | None = None, metadata: dict | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"channel": channel, "text": text, "unfurl_links": False, "unfurl_media": False}
        if blocks:
            args["blocks"] = blocks
        if thread_ts:
            args["thread_ts"] = thread_ts
        if metadata:
            args["metadata"] = metadata
        return await self._call("chat.postMessage", **args)

    async def update_message(self, channel_id: str, ts: str, text: str, *, blocks: list | None = None, metadata: dict | None = None) -> dict[str, Any]:
        args: dict[str, Any] = {"channel": channel_id, "ts": ts, "text": text}
        if blocks is not None:
            args["blocks"] = blocks
        if metadata:
            args["metadata"] = metadata
        return await self._call("chat.update", **args)

    async def channel_id(self, channel: str) -> str:
        """Resolve ``#name`` to a channel id (conversations.list, cached); ids pass through."""
        name = channel.lstrip("#")
        if channel[:1] in ("C", "G", "D") and not channel.startswith("#") and name.isalnum() and name.upper() == name:
            return channel
        if name in self._channel_ids:
            return self._channel_ids[name]
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 200, "exclude_archived": True, "types": "public_channel,private_channel"}
            if cursor:
                params["cursor"] = cursor
            data = await self._call("conversations.list", **params)
            for ch in data.get("channels") or []:
                self._channel_ids[ch.get("name", "")] = ch["id"]
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if name in self._channel_ids:
                return self._channel_ids[name]
            if not cursor:
                raise FatalError(f"slack conversations.list: channel {channel!r} not found (invite the bot, or check the routing file)", code="slack.channel_not_found")

    async def find_by_metadata(self, channel_id: str, *, oldest: float, match: dict[str, Any], thread_ts: str | None = None) -> str | None:
        """The ts of the newest message at/after ``oldest`` whose metadata payload has ``match``'s items."""
        cursor = None
        method = "conversations.replies" if thread_ts else "conversations.history"
        while True:
            params: dict[str, Any] = {"channel": channel_id, "oldest": f"{oldest:.6f}", "limit": 200, "include_all_metadata": True, "inclusive": True}
            if thread_ts:
                params["ts"] = thread_ts
            if cursor:
                params["cursor"] = cursor
            data = await self._call(method, **params)
            for msg in data.get("messages") or []:
                payload = ((msg.get("metadata") or {}).get("event_payload")) or {}
                if all(payload.get(k) == v for k, v in match.items()):
                    return msg.get("ts")
            cursor = (data.get("response_metadata") or {}).get("next_cursor")
            if not cursor or not data.get("has_more", True):
                return None

    async def close(self) -> None:
        session = getattr(self._web, "session", None)
        if session is not None and not session.closed:
            await session.close()
