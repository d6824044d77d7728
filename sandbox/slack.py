"""Fake Slack Web API: https://docs.slack.dev/reference/methods

Point slack_sdk at it with ``AsyncWebClient(token="xoxb-…", base_url=f"{url}/api/")`` (the trailing
slash matters: slack_sdk appends the method name). Implemented: ``auth.test``, ``chat.postMessage``,
``chat.update``, ``conversations.history``, ``conversations.replies``, ``conversations.info``,
``conversations.join``, ``conversations.list``.

Like Slack, every method answers GET and POST and takes its arguments from the query string, a
form body or a JSON body; errors are HTTP 200 with ``{"ok": false, "error": "<code>"}``, except rate
limits (429 + ``Retry-After``) and unknown methods (404). What slack_sdk 3.x sends: chat.postMessage
and chat.update as JSON; conversations.history/replies/info/list as GET with query parameters
(booleans as ``1``/``0``); auth.test and conversations.join as POST with the arguments in the query
string; the token always as ``Authorization: Bearer`` (the only place Slack reads it from for a
JSON body; form bodies and query strings may carry a ``token`` argument instead).

Channels are known by id and name. chat.postMessage accepts ``C…`` ids, ``#name`` and ``name`` (as
Slack does) and may create unknown names (``auto_create_channels``); every other method wants the id,
as Slack does, and answers ``channel_not_found`` otherwise. Posting does not require membership (as
with the ``chat:write.public`` scope). Text is stored exactly as received.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from .common import SandboxState, SlidingWindow, TokenBucket, form_fields, retry_after_header, sandbox_app

# https://docs.slack.dev/apis/web-api/rate-limits: chat.postMessage "generally allows an app to post
# 1 message per second to a specific channel", with short bursts over it. The burst size is not
# published; 3 is ours.
POST_MESSAGE_PER_SECOND = 1.0
POST_MESSAGE_BURST = 3
# Same page: Tier 2 allows 20+ requests per minute, Tier 3 50+; each method's reference page names its tier.
TIER_PER_MINUTE = {2: 20, 3: 50}
METHOD_TIER = {
    "chat.update": 3,
    "conversations.history": 3,
    "conversations.replies": 3,
    "conversations.info": 3,
    "conversations.join": 3,
    "conversations.list": 2,
}
# https://docs.slack.dev/reference/methods/chat.postMessage and https://docs.slack.dev/reference/block-kit/blocks
MAX_TEXT_CHARS = 40_000
MAX_BLOCKS = 50
MAX_SECTION_TEXT = 3000
MAX_HEADER_TEXT = 150
BLOCK_TYPES = frozenset({
    "actions", "context", "divider", "file", "header", "image", "input", "markdown", "rich_text", "section", "table",
    "video",
})
# (default, maximum) of ``limit``: conversations.history and .list reference pages; replies is ours.
HISTORY_LIMIT = (100, 999)
REPLIES_LIMIT = (1000, 1000)
LIST_LIMIT = (100, 1000)

_CHANNEL_ID = re.compile(r"[CG][A-Z0-9]{2,}")
_TS = re.compile(r"\d+(\.\d+)?")


@dataclass
class SlackChannel:
    id: str
    name: str
    created: int
    is_member: bool = True


@dataclass
class SlackMessage:
    channel: str
    ts: str
    text: str
    blocks: list[Any] | None = None
    attachments: list[Any] | None = None
    metadata: dict[str, Any] | None = None
    thread_ts: str | None = None  # set on replies, and on a parent once it has replies
    reply_broadcast: bool = False
    edited_ts: str | None = None
    replies: list[str] = field(default_factory=list)

    @property
    def is_reply(self) -> bool:
        return self.thread_ts is not None and self.thread_ts != self.ts


class SlackError(Exception):
    def __init__(self, code: str, *messages: str) -> None:
        super().__init__(code)
        self.code = code
        self.messages = messages


class RateLimited(Exception):
    def __init__(self, wait: float) -> None:
        super().__init__(wait)
        self.wait = wait


class SlackState(SandboxState):
    """A one-workspace Slack: channels, messages with threads and metadata, and the bot's identity.

    ``channels`` maps channel id to name (``{"C0INCIDENT": "incidents"}``). ``tokens`` is the set of
    valid tokens; ``None`` accepts any token starting with ``xoxb-``. With ``auto_create_channels``,
    chat.postMessage to an unknown *name* creates the channel (its id derived from the name).
    """

    vendor = "slack"

    def __init__(
        self,
        channels: Mapping[str, str] | None = None,
        *,
        tokens: Iterable[str] | None = None,
        auto_create_channels: bool = True,
        team_id: str = "T0SANDBOX1",
        team: str = "Switchboard Sandbox",
        bot_user_id: str = "U0SANDBOXB",
        bot_id: str = "B0SANDBOX1",
        app_id: str = "A0SANDBOX1",
        bot_name: str = "switchboard",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        for channel_id in channels or {}:
            if not _CHANNEL_ID.fullmatch(channel_id):
                raise ValueError(f"not a Slack channel id: {channel_id!r}")
        self.configured_channels = {cid: _normalise_name(name) for cid, name in (channels or {}).items()}
        self.tokens = frozenset(tokens) if tokens is not None else None
        self.auto_create_channels = auto_create_channels
        self.team_id, self.team, self.bot_user_id, self.bot_id, self.app_id, self.bot_name = (
            team_id, team, bot_user_id, bot_id, app_id, bot_name,
        )
        self.created = int(self.wall_clock())
        self._init_vendor()

    def _init_vendor(self) -> None:
        self.channels: dict[str, SlackChannel] = {}
        self.messages: dict[str, dict[str, SlackMessage]] = {}  # channel id -> ts -> message, ts ascending
        self._last_ts: dict[str, int] = {}
        self._post_buckets: dict[str, TokenBucket] = {}
        self._tier_windows: dict[str, SlidingWindow] = {}
        for cid, name in self.configured_channels.items():
            self.add_channel(name, cid)

    def reset(self) -> None:
        super().reset()
        self._init_vendor()

    def token_valid(self, token: str) -> bool:
        return token in self.tokens if self.tokens is not None else token.startswith("xoxb-")

    def add_channel(self, name: str, channel_id: str | None = None) -> SlackChannel:
        name = _normalise_name(name)
        channel_id = channel_id or "C" + hashlib.sha1(name.encode()).hexdigest()[:10].upper()
        channel = SlackChannel(channel_id, name, int(self.wall_clock()))
        self.channels[channel_id] = channel
        self.messages.setdefault(channel_id, {})
        return channel

    def channel_by_id(self, channel_id: str) -> SlackChannel | None:
        return self.channels.get(channel_id)

    def channel_by_name(self, name: str) -> SlackChannel | None:
        name = _normalise_name(name)
        return next((c for c in self.channels.values() if c.name == name), None)

    def history(self, channel: str) -> list[SlackMessage]:
        """Messages shown in the channel (top level and broadcast replies), oldest first."""
        cid = self._cid(channel)
        return [m for m in self.messages.get(cid, {}).values() if not m.is_reply or m.reply_broadcast]

    def thread(self, channel: str, ts: str) -> list[SlackMessage]:
        """The parent and its replies, oldest first (empty if unknown)."""
        msgs = self.messages.get(self._cid(channel), {})
        parent = msgs.get(ts)
        return [parent, *(msgs[r] for r in parent.replies)] if parent else []

    def _cid(self, channel: str) -> str:
        if channel in self.channels:
            return channel
        found = self.channel_by_name(channel)
        return found.id if found else channel

    def next_ts(self, channel_id: str) -> str:
        """A Slack ``ts``: epoch seconds with six decimals, unique and increasing per channel."""
        micros = max(int(self.wall_clock() * 1_000_000), self._last_ts.get(channel_id, 0) + 1)
        self._last_ts[channel_id] = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def post_bucket(self, channel_id: str) -> TokenBucket:
        if channel_id not in self._post_buckets:
            self._post_buckets[channel_id] = TokenBucket(POST_MESSAGE_PER_SECOND, POST_MESSAGE_BURST, self.clock)
        return self._post_buckets[channel_id]

    def tier_window(self, method: str) -> SlidingWindow | None:
        tier = METHOD_TIER.get(method)
        if tier is None:
            return None
        if method not in self._tier_windows:
            self._tier_windows[method] = SlidingWindow(TIER_PER_MINUTE[tier], 60.0, self.clock)
        return self._tier_windows[method]

    def fault_body(self, status: int) -> dict[str, Any]:
        return {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"}

    def answer_error(self, status: int, body: bytes) -> str | None:
        """Slack refuses in the body (HTTP 200, ``{"ok": false, "error": code}``): keep the code."""
        try:
            answer = json.loads(body)
        except ValueError:
            return None
        return answer.get("error") if isinstance(answer, dict) and answer.get("ok") is False else None

    def message_json(self, msg: SlackMessage, *, metadata: bool = True, for_update: bool = False) -> dict[str, Any]:
        """A message as the Web API shows it (shape of the contract samples)."""
        out: dict[str, Any] = {
            "user": self.bot_user_id,
            "type": "message",
            "ts": msg.ts,
            "bot_id": self.bot_id,
            "app_id": self.app_id,
            "text": msg.text,
            "team": self.team_id,
            "bot_profile": self.bot_profile(),
        }
        if msg.blocks is not None:
            out["blocks"] = msg.blocks
        if msg.attachments is not None:
            out["attachments"] = msg.attachments
        if msg.edited_ts:
            out["edited"] = {"user": self.bot_user_id, "ts": msg.edited_ts}
        if metadata and msg.metadata is not None:
            out["metadata"] = msg.metadata
        if for_update:  # chat.update's "message" has neither ts nor thread fields
            del out["ts"]
            return out
        if msg.thread_ts:
            out["thread_ts"] = msg.thread_ts
        if msg.is_reply:
            out["parent_user_id"] = self.bot_user_id
            if msg.reply_broadcast:
                out["subtype"] = "thread_broadcast"
        elif msg.replies:
            out.update(
                reply_count=len(msg.replies),
                reply_users_count=1,
                latest_reply=msg.replies[-1],
                reply_users=[self.bot_user_id],
                is_locked=False,
                subscribed=False,
            )
        return out

    def bot_profile(self) -> dict[str, Any]:
        icon = "https://a.slack-edge.com/80588/img/plugins/app/bot_{}.png"
        return {
            "id": self.bot_id,
            "deleted": False,
            "name": self.bot_name,
            "updated": self.created,
            "app_id": self.app_id,
            "icons": {f"image_{n}": icon.format(n) for n in (36, 48, 72)},
            "team_id": self.team_id,
        }

    def channel_json(self, channel: SlackChannel, *, num_members: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": channel.id,
            "name": channel.name,
            "is_channel": True,
            "is_group": False,
            "is_im": False,
            "is_mpim": False,
            "is_private": False,
            "created": channel.created,
            "is_archived": False,
            "is_general": channel.name == "general",
            "unlinked": 0,
            "name_normalized": channel.name,
            "is_shared": False,
            "is_org_shared": False,
            "is_ext_shared": False,
            "is_pending_ext_shared": False,
            "pending_shared": [],
            "context_team_id": self.team_id,
            "updated": channel.created * 1000,
            "creator": self.bot_user_id,
            "is_member": channel.is_member,
            "topic": {"value": "", "creator": "", "last_set": 0},
            "purpose": {"value": "", "creator": "", "last_set": 0},
            "previous_names": [],
            "shared_team_ids": [self.team_id],
        }
        if num_members:
            out["num_members"] = 1 if channel.is_member else 0
        return out

    def snapshot(self) -> dict[str, Any]:
        channels = {}
        for cid, channel in self.channels.items():
            msgs = self.messages[cid]
            top = [m for m in msgs.values() if not m.is_reply]
            channels[cid] = {
                "id": cid,
                "name": channel.name,
                "is_member": channel.is_member,
                "messages": [
                    {**self._state_message(m), "replies": [self._state_message(msgs[r]) for r in m.replies]}
                    for m in top
                ],
                # replies whose thread_ts names no message: Slack accepts them and shows them nowhere
                "orphan_replies": [
                    self._state_message(m) for m in msgs.values() if m.is_reply and m.thread_ts not in msgs
                ],
            }
        return {"channels": channels}

    @staticmethod
    def _state_message(msg: SlackMessage) -> dict[str, Any]:
        return {
            "ts": msg.ts,
            "thread_ts": msg.thread_ts,
            "text": msg.text,
            "blocks": msg.blocks,
            "attachments": msg.attachments,
            "metadata": msg.metadata,
            "reply_broadcast": msg.reply_broadcast,
            "edited_ts": msg.edited_ts,
        }


class _SlackApi:
    def __init__(self, state: SlackState) -> None:
        self.state = state
        self.methods: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
            "auth.test": self.auth_test,
            "chat.postMessage": self.chat_post_message,
            "chat.update": self.chat_update,
            "conversations.history": self.conversations_history,
            "conversations.replies": self.conversations_replies,
            "conversations.info": self.conversations_info,
            "conversations.join": self.conversations_join,
            "conversations.list": self.conversations_list,
        }

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["method"]
        method = self.methods.get(name)
        if method is None:
            return web.json_response({"ok": False, "error": "unknown_method", "req_method": name}, status=404)
        try:
            args = await _arguments(request)
            token = _token(request, args)
            if not token:
                raise SlackError("not_authed")
            if not self.state.token_valid(token):
                raise SlackError("invalid_auth")
            window = self.state.tier_window(name)
            if window is not None and self.state.rate_limits and (wait := window.hit()):
                raise RateLimited(wait)
            return web.json_response({"ok": True, **method(args)})
        except SlackError as exc:
            body: dict[str, Any] = {"ok": False, "error": exc.code}
            if exc.messages:
                body["errors"] = list(exc.messages)
                body["response_metadata"] = {"messages": [f"[ERROR] {m}" for m in exc.messages]}
            return web.json_response(body)
        except RateLimited as exc:
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": retry_after_header(exc.wait)}
            )

    def auth_test(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.state
        return {
            "url": "https://switchboard-sandbox.slack.com/",
            "team": s.team,
            "user": s.bot_name,
            "team_id": s.team_id,
            "user_id": s.bot_user_id,
            "bot_id": s.bot_id,
            "is_enterprise_install": False,
        }

    def chat_post_message(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.state
        channel = self._channel(args, by_name=True)
        if s.rate_limits and (wait := s.post_bucket(channel.id).take()):
            raise RateLimited(wait)
        text, blocks, attachments = _content(args, previous=None)
        metadata = _metadata(args)
        thread_ts = args.get("thread_ts")
        thread_ts = None if thread_ts in (None, "") else str(thread_ts)
        if thread_ts is not None and not _TS.fullmatch(thread_ts):
            raise SlackError("invalid_thread_ts", f"{thread_ts} is not a valid thread_ts")
        msgs = s.messages[channel.id]
        parent = msgs.get(thread_ts) if thread_ts else None
        if parent is not None and parent.is_reply:  # a reply's ts given as thread_ts: filed under its parent
            parent = msgs.get(parent.thread_ts or "")
            thread_ts = parent.ts if parent else thread_ts
        msg = SlackMessage(
            channel=channel.id,
            ts=s.next_ts(channel.id),
            text=text,
            blocks=blocks,
            attachments=attachments,
            metadata=metadata,
            thread_ts=thread_ts,
            reply_broadcast=thread_ts is not None and _flag(args.get("reply_broadcast")),
        )
        msgs[msg.ts] = msg
        if parent is not None:
            parent.thread_ts = parent.ts
            parent.replies.append(msg.ts)
        return {"channel": channel.id, "ts": msg.ts, "message": s.message_json(msg)}

    def chat_update(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.state
        channel = self._channel(args)
        ts = _required(args, "ts")
        msg = s.messages[channel.id].get(str(ts))
        if msg is None:
            raise SlackError("message_not_found")
        text, blocks, attachments = _content(args, previous=msg)
        metadata = _metadata(args)
        msg.text, msg.blocks, msg.attachments = text, blocks, attachments
        if metadata is not None:
            msg.metadata = metadata
        msg.edited_ts = s.next_ts(channel.id)
        return {"channel": channel.id, "ts": msg.ts, "text": msg.text, "message": s.message_json(msg, for_update=True)}

    def conversations_history(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.state
        channel = self._channel(args)
        msgs = list(reversed(s.history(channel.id)))  # newest first
        page, next_ts = _page(msgs, args, HISTORY_LIMIT, newest_first=True)
        result: dict[str, Any] = {
            "messages": [s.message_json(m, metadata=_flag(args.get("include_all_metadata"))) for m in page],
            "has_more": next_ts is not None,
            "pin_count": 0,
            "channel_actions_ts": None,
            "channel_actions_count": 0,
            "response_metadata": {"next_cursor": _cursor("next_ts", next_ts)},
        }
        for bound in ("oldest", "latest"):
            if args.get(bound) not in (None, ""):
                result[bound] = str(args[bound])
        return result

    def conversations_replies(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.state
        channel = self._channel(args)
        ts = str(_required(args, "ts"))
        msgs = s.messages[channel.id]
        msg = msgs.get(ts)
        if msg is not None and msg.is_reply:
            msg = msgs.get(msg.thread_ts or "")
        if msg is None:
            raise SlackError("thread_not_found")
        page, next_ts = _page(s.thread(channel.id, msg.ts), args, REPLIES_LIMIT, newest_first=False)
        return {
            "messages": [s.message_json(m, metadata=_flag(args.get("include_all_metadata"))) for m in page],
            "has_more": next_ts is not None,
            "response_metadata": {"next_cursor": _cursor("next_ts", next_ts)},
        }

    def conversations_info(self, args: dict[str, Any]) -> dict[str, Any]:
        return {"channel": self.state.channel_json(self._channel(args), num_members=True)}

    def conversations_join(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(args)
        already = channel.is_member
        channel.is_member = True
        result: dict[str, Any] = {"channel": self.state.channel_json(channel)}
        if already:
            result["warning"] = "already_in_channel"
            result["response_metadata"] = {"warnings": ["already_in_channel"]}
        return result

    def conversations_list(self, args: dict[str, Any]) -> dict[str, Any]:
        s = self.state
        types = str(args.get("types") or "public_channel").split(",")
        channels = list(s.channels.values()) if "public_channel" in types else []
        limit = _limit(args, LIST_LIMIT)
        start = 0
        if args.get("cursor"):
            start_id = _decode_cursor(str(args["cursor"]), "team")
            start = next((i for i, c in enumerate(channels) if c.id == start_id), len(channels))
        page = channels[start : start + limit]
        rest = channels[start + limit :]
        return {
            "channels": [s.channel_json(c, num_members=True) for c in page],
            "response_metadata": {"next_cursor": _cursor("team", rest[0].id if rest else None)},
        }

    def _channel(self, args: dict[str, Any], *, by_name: bool = False) -> SlackChannel:
        value = str(args.get("channel") or "")
        channel = self.state.channel_by_id(value)
        if channel is None and by_name and value and not _CHANNEL_ID.fullmatch(value):
            channel = self.state.channel_by_name(value)
            if channel is None and self.state.auto_create_channels:
                channel = self.state.add_channel(value)
        if channel is None:
            raise SlackError("channel_not_found")
        return channel


async def _arguments(request: web.Request) -> dict[str, Any]:
    args: dict[str, Any] = dict(request.query)
    raw = await request.read()
    if not raw:
        return args
    ctype = request.content_type
    if ctype == "application/json":
        try:
            body = json.loads(raw)
        except ValueError:
            raise SlackError("invalid_json") from None
        if not isinstance(body, dict):
            raise SlackError("json_not_object")
        args.update(body)
    elif ctype == "application/x-www-form-urlencoded":
        args.update(form_fields(raw))
    elif ctype == "multipart/form-data":
        args.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
    else:
        raise SlackError("invalid_post_type")
    return args


def _token(request: web.Request, args: dict[str, Any]) -> str | None:
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    if request.content_type == "application/json":
        return None  # Slack reads the token of a JSON request from the Authorization header only
    token = args.get("token")  # the legacy token argument, in a form body or the query string
    return str(token) if token else None


def _required(args: dict[str, Any], name: str) -> Any:
    value = args.get(name)
    if value in (None, ""):
        raise SlackError("invalid_arguments", f"missing required field: {name}")
    return value


def _flag(value: Any) -> bool:
    return value is True or str(value).lower() in ("1", "true")


def _json_arg(args: dict[str, Any], name: str, error: str) -> Any:
    value = args.get(name)
    if isinstance(value, str):  # form bodies carry JSON-encoded blocks, attachments and metadata
        if not value:
            return None
        try:
            return json.loads(value)
        except ValueError:
            raise SlackError(error) from None
    return value


def _content(args: dict[str, Any], previous: SlackMessage | None) -> tuple[str, list[Any] | None, list[Any] | None]:
    """Text, blocks and attachments of a new message, or of an edit (omitted fields keep their value)."""
    text = args.get("text")
    blocks = _json_arg(args, "blocks", "invalid_blocks_format")
    attachments = _json_arg(args, "attachments", "invalid_attachments")
    if blocks is not None and not isinstance(blocks, list):
        raise SlackError("invalid_blocks_format")
    if attachments is not None and not isinstance(attachments, list):
        raise SlackError("invalid_attachments")
    if not text and not blocks and not attachments:
        raise SlackError("no_text")
    text = "" if text is None else str(text)
    # Slack's reference says text over 40,000 characters is truncated and also lists msg_too_long;
    # the fake refuses it so an overlong message shows up in tests.
    if len(text) > MAX_TEXT_CHARS:
        raise SlackError("msg_too_long")
    if blocks is not None and (errors := _block_errors(blocks)):
        raise SlackError("invalid_blocks", *errors)
    if previous is not None:
        text = text if "text" in args else previous.text
        blocks = blocks if "blocks" in args else previous.blocks
        attachments = attachments if "attachments" in args else previous.attachments
    return text, blocks, attachments


def _block_errors(blocks: list[Any]) -> list[str]:
    if len(blocks) > MAX_BLOCKS:
        return [f"no more than {MAX_BLOCKS} items allowed [json-pointer:/blocks]"]
    errors = []
    for i, block in enumerate(blocks):
        where = f"[json-pointer:/blocks/{i}]"
        if not isinstance(block, dict) or block.get("type") not in BLOCK_TYPES:
            errors.append(f"unsupported type or missing type {where}")
            continue
        text = block.get("text")
        if block["type"] == "section":
            if not block.get("fields") and not (isinstance(text, dict) and text.get("text")):
                errors.append(f"must provide text or fields {where}")
            elif isinstance(text, dict) and len(str(text.get("text", ""))) > MAX_SECTION_TEXT:
                errors.append(f"must be less than {MAX_SECTION_TEXT + 1} characters {where[:-1]}/text/text]")
        elif block["type"] == "header":
            if not isinstance(text, dict) or text.get("type") != "plain_text" or not text.get("text"):
                errors.append(f"must provide a plain_text text object {where[:-1]}/text]")
            elif len(str(text["text"])) > MAX_HEADER_TEXT:
                errors.append(f"must be less than {MAX_HEADER_TEXT + 1} characters {where[:-1]}/text/text]")
    return errors


def _metadata(args: dict[str, Any]) -> dict[str, Any] | None:
    metadata = _json_arg(args, "metadata", "invalid_metadata_format")
    if metadata is None:
        return None
    if (
        not isinstance(metadata, dict)
        or not isinstance(metadata.get("event_type"), str)
        or not metadata["event_type"]
        or not isinstance(metadata.get("event_payload"), dict)
    ):
        raise SlackError("invalid_metadata_format")
    return {"event_type": metadata["event_type"], "event_payload": metadata["event_payload"]}


def _ts_key(value: Any, error: str = "invalid_ts") -> int:
    """A ``ts`` as integer microseconds, for exact comparisons."""
    text = str(value)
    if not _TS.fullmatch(text):
        raise SlackError(error)
    seconds, _, fraction = text.partition(".")
    return int(seconds) * 1_000_000 + int((fraction + "000000")[:6])


def _limit(args: dict[str, Any], bounds: tuple[int, int]) -> int:
    default, maximum = bounds
    value = args.get("limit")
    if value in (None, ""):
        return default
    try:
        limit = int(value)
    except (TypeError, ValueError):
        raise SlackError("invalid_limit") from None
    return default if limit <= 0 else min(limit, maximum)


def _page(
    msgs: list[SlackMessage], args: dict[str, Any], bounds: tuple[int, int], *, newest_first: bool
) -> tuple[list[SlackMessage], str | None]:
    """Filter by oldest/latest (exclusive unless ``inclusive``), resume at the cursor, cut at the limit.
    Returns the page and the ts the next page starts at."""
    inclusive = _flag(args.get("inclusive"))
    oldest = _ts_key(args["oldest"], "invalid_ts_oldest") if args.get("oldest") not in (None, "") else None
    latest = _ts_key(args["latest"], "invalid_ts_latest") if args.get("latest") not in (None, "") else None

    def in_range(m: SlackMessage) -> bool:
        key = _ts_key(m.ts)
        if oldest is not None and (key < oldest or (key == oldest and not inclusive)):
            return False
        return latest is None or key < latest or (key == latest and inclusive)

    selected = [m for m in msgs if in_range(m)]
    if args.get("cursor"):
        start = _ts_key(_decode_cursor(str(args["cursor"]), "next_ts"), "invalid_cursor")
        selected = [m for m in selected if (_ts_key(m.ts) <= start if newest_first else _ts_key(m.ts) >= start)]
    limit = _limit(args, bounds)
    return selected[:limit], selected[limit].ts if len(selected) > limit else None


def _cursor(kind: str, value: str | None) -> str:
    return base64.b64encode(f"{kind}:{value}".encode()).decode() if value else ""


def _decode_cursor(cursor: str, kind: str) -> str:
    try:
        decoded = base64.b64decode(cursor, validate=True).decode()
    except ValueError:
        raise SlackError("invalid_cursor") from None
    prefix, _, value = decoded.partition(":")
    if prefix != kind or not value:
        raise SlackError("invalid_cursor")
    return value


def _normalise_name(name: str) -> str:
    return name.strip().lstrip("#").lower()


def create_app(state: SlackState | None = None) -> web.Application:
    state = state if state is not None else SlackState()
    app = sandbox_app(state)
    api = _SlackApi(state)
    app.router.add_route("GET", "/api/{method}", api.handle)
    app.router.add_route("POST", "/api/{method}", api.handle)
    return app


__all__ = ["SlackChannel", "SlackMessage", "SlackState", "create_app"]
