"""The HTTP API client: publish, history and presence without a socket, consuming an agent's
durable inbox, dead letters, the agent directory (announce, discover), channel management, and
minting temporary keys.

For backends and scripts that cannot hold a socket. It uses only the standard library; each
call runs in a worker thread so the event loop never blocks. The base URL is derived from the
server URL (``ws`` → ``http``), so one URL serves both clients.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

from .channel import announce_payload, check_receipt, discover_query, encode_attachments, history_query, metadata_object
from .client import KeySource, http_base_url, resolve_key
from .errors import ConnectionFailedError, ProtocolError, RequestTimeoutError, SwitchboardError, error_from_reply
from .types import (
    AgentCard,
    CacheRetention,
    DeadLetterPage,
    Direction,
    HistoryPage,
    InboxMessage,
    LogRetention,
    PollSource,
    PresenceState,
    PublishAck,
    Retention,
    Scope,
    StoragePolicy,
    agent_cards,
)

Capability = Literal["publish", "subscribe", "history", "presence", "kv", "signal", "stream", "inbox"]


@dataclass(frozen=True)
class TemporaryKey:
    """A minted temporary key: hand ``key`` to the browser or device; revoke it by ``id``."""

    key: str
    """The key, ``tk_…``."""
    id: str
    """Its id, for :meth:`HttpClient.revoke_key` (revokes every key attenuated from it too)."""
    expires_at: int
    """When it stops working, ms since the epoch."""

    @staticmethod
    def from_wire(obj: Any) -> TemporaryKey:
        try:
            return TemporaryKey(key=str(obj["key"]), id=str(obj["id"]), expires_at=int(obj["expires_at"]))
        except (KeyError, TypeError, ValueError):
            raise ProtocolError(f"unreadable temporary key: {obj!r}") from None


@dataclass(frozen=True)
class ChannelInfo:
    """A channel's description."""

    name: str
    scope: str
    epoch: str
    head: int
    first_available: int
    storage: str
    """The :data:`StoragePolicy`: ``persistent``, ``log``, ``cache`` or ``ephemeral``."""
    retention: Retention
    """The retention in force (0 = unlimited), with the channel's ``cache`` and ``log`` bounds
    when it has any: ``{"max_messages": 0, "max_age_secs": 0, "cache": {"max_messages": 5}}``."""
    has_password: bool
    created_at: int
    agents: int

    @staticmethod
    def from_wire(obj: Any) -> ChannelInfo:
        try:
            return ChannelInfo(**{k: obj[k] for k in ChannelInfo.__dataclass_fields__})
        except (KeyError, TypeError):
            raise ProtocolError(f"unreadable channel info: {obj!r}") from None


class HttpClient:
    """A client of the HTTP API, authenticated with a bearer key."""

    def __init__(
        self,
        url: str,
        api_key: KeySource,
        *,
        channel_password: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = http_base_url(url)
        self._key_source = api_key
        self.channel_password = channel_password
        """Sent as ``x-channel-password``, for public channels that have one."""
        self.timeout = timeout

    async def publish(
        self,
        channel: str,
        type: str,
        data: Any = None,
        *,
        to: str | None = None,
        ephemeral: bool = False,
        attachments: list[bytes] | None = None,
        id: str | None = None,
        sender: str | None = None,
        receipt: bool = False,
        scope: Scope = "private",
    ) -> PublishAck:
        """Publishes as ``sender`` (default ``http``); returns once the message is durable.
        A channel that does not exist is created with default options. ``receipt=True`` (with
        ``to``): the agent ``sender`` gets :class:`~switchboard.Receipt` events while it is in
        the channel."""
        check_receipt(receipt, to, ephemeral)
        body: dict[str, Any] = {"type": type, "data": data}
        optional = {"to": to, "id": id, "from": sender}
        body.update({k: v for k, v in optional.items() if v is not None})
        if ephemeral:
            body["ephemeral"] = True
        if receipt:
            body["receipt"] = True
        if attachments:
            body["attachments"] = encode_attachments(attachments)
        return PublishAck.from_wire(await self._call("POST", ["v1", "channels", channel, "messages"], scope, body=body))

    async def history(
        self,
        channel: str,
        *,
        from_offset: int | None = None,
        to_offset: int | None = None,
        from_ts: int | None = None,
        to_ts: int | None = None,
        sender: str | None = None,
        type: str | None = None,
        limit: int | None = None,
        direction: Direction = "forward",
        poll_source: PollSource | str | None = None,
        scope: Scope = "private",
    ) -> HistoryPage:
        """Reads history (every message, direct ones too). ``poll_source`` picks the storage
        tier as for :meth:`Channel.history` (default ``AUTO``); ``page.sources`` tells which tier
        served which offsets."""
        query = history_query(from_offset, to_offset, from_ts, to_ts, sender, type, limit, direction, poll_source)
        return HistoryPage.from_wire(await self._call("GET", ["v1", "channels", channel, "messages"], scope, query=query))

    async def presence(self, channel: str, *, scope: Scope = "private") -> PresenceState:
        """The agents present in a channel."""
        return PresenceState.from_wire(await self._call("GET", ["v1", "channels", channel, "presence"], scope))

    async def inbox_receive(
        self,
        channel: str,
        agent: str,
        *,
        max: int | None = None,
        visibility_timeout_ms: int | None = None,
        scope: Scope = "private",
    ) -> list[InboxMessage]:
        """Leases up to ``max`` (1–100, default 10) messages of ``agent``'s inbox, oldest first,
        for backends that poll instead of holding a socket. Each must be acknowledged
        (:meth:`inbox_ack`) or rejected (:meth:`inbox_reject`) within ``visibility_timeout_ms``
        (default: the server's, 30 s), else it is delivered again. An empty list: nothing is
        waiting."""
        body: dict[str, Any] = {}
        if max is not None:
            body["max"] = max
        if visibility_timeout_ms is not None:
            body["visibility_timeout_ms"] = visibility_timeout_ms
        path = ["v1", "channels", channel, "inbox", agent, "receive"]
        result = await self._call("POST", path, scope, body=body)
        messages = result.get("messages") if isinstance(result, dict) else None
        if not isinstance(messages, list):
            raise ProtocolError(f"unreadable inbox receive reply: {result!r}")
        return [InboxMessage.from_wire(m) for m in messages]

    async def inbox_ack(self, channel: str, agent: str, id: str, *, scope: Scope = "private") -> None:
        """Acknowledges a message of ``agent``'s inbox: it leaves the inbox.
        :class:`~switchboard.NotFoundError` (``not_found``) when it is not pending there."""
        await self._call("POST", ["v1", "channels", channel, "inbox", agent, "ack"], scope, body={"id": id})

    async def inbox_reject(
        self,
        channel: str,
        agent: str,
        id: str,
        reason: str | None = None,
        *,
        requeue: bool = True,
        scope: Scope = "private",
    ) -> None:
        """Rejects a message of ``agent``'s inbox: delivered again (``requeue``, the default)
        until the server's rejection limit, else a dead letter now; ``reason`` ≤ 1 KiB."""
        body: dict[str, Any] = {"id": id, "requeue": requeue}
        if reason is not None:
            body["reason"] = reason
        await self._call("POST", ["v1", "channels", channel, "inbox", agent, "reject"], scope, body=body)

    async def dead_letters(
        self,
        channel: str,
        *,
        recipient: str | None = None,
        after: str | None = None,
        limit: int | None = None,
        scope: Scope = "private",
    ) -> DeadLetterPage:
        """One page (``limit`` 1–1000, default 100) of the channel's dead letters sent by this
        tenant's agents, oldest first; only those addressed to ``recipient`` when given. Pass
        ``page.next`` as ``after`` for the following page."""
        optional = {"recipient": recipient, "after": after, "limit": limit}
        query = {k: v for k, v in optional.items() if v is not None}
        path = ["v1", "channels", channel, "dead_letters"]
        return DeadLetterPage.from_wire(await self._call("GET", path, scope, query=query))

    async def delete_dead_letter(self, channel: str, id: str, *, scope: Scope = "private") -> None:
        """Deletes one of this tenant's dead letters by message id; ``not_found`` when there is
        none."""
        await self._call("DELETE", ["v1", "channels", channel, "dead_letters", id], scope)

    async def announce_agent(
        self, name: str, capabilities: Sequence[str], metadata: Mapping[str, Any] | None = None
    ) -> AgentCard:
        """Announces agent ``name`` in the tenant's directory (``PUT /v1/agents/{name}``), for
        backends that act as agents without a socket: replaces its card and returns it. The
        card is ``online`` only while an agent of that name is present in one of the tenant's
        channels. Refusals as for :meth:`Channel.announce`, and ``invalid_agent_name``."""
        body = announce_payload(capabilities, metadata)
        return AgentCard.from_wire(await self._call("PUT", ["v1", "agents", name], "private", body=body))

    async def update_agent_metadata(self, name: str, metadata: Mapping[str, Any]) -> AgentCard:
        """Replaces announced agent ``name``'s metadata (``PATCH /v1/agents/{name}``);
        :class:`~switchboard.NotFoundError` (``not_found``) when it never announced."""
        body = {"metadata": metadata_object(metadata)}
        return AgentCard.from_wire(await self._call("PATCH", ["v1", "agents", name], "private", body=body))

    async def agent(self, name: str) -> AgentCard:
        """Agent ``name``'s card; ``not_found`` when it never announced (or was removed)."""
        return AgentCard.from_wire(await self._call("GET", ["v1", "agents", name], "private"))

    async def remove_agent(self, name: str) -> None:
        """Deletes agent ``name``'s card from the directory (watchers see ``removed``);
        ``not_found`` when there is none."""
        await self._call("DELETE", ["v1", "agents", name], "private")

    async def discover(
        self,
        capability: str | None = None,
        filters: Mapping[str, Any] | None = None,
        online: bool | None = None,
        limit: int | None = None,
    ) -> list[AgentCard]:
        """The tenant's announced agents that match, by name (``POST /v1/agents/discover``);
        the conditions are those of :meth:`Channel.discover`."""
        body = discover_query(capability, filters, online, limit)
        return agent_cards(await self._call("POST", ["v1", "agents", "discover"], "private", body=body))

    async def create_channel(
        self,
        name: str,
        *,
        scope: Scope = "private",
        password: str | None = None,
        storage: StoragePolicy | None = None,
        max_messages: int | None = None,
        max_age_secs: int | None = None,
        cache: CacheRetention | None = None,
        log: LogRetention | None = None,
    ) -> ChannelInfo:
        """Creates a channel; ``channel_exists`` (:class:`~switchboard.ConflictError`) when it
        exists already.

        ``storage`` picks the tiers its messages live in (:data:`StoragePolicy`):
        ``persistent`` (cache, log and database; the default), ``log`` (cache and durable log,
        no database), ``cache`` (memory only; a restart starts a new epoch) or ``ephemeral``
        (no history). ``max_messages`` and ``max_age_secs`` bound every tier; ``cache`` bounds
        the in-memory cache (``{"max_messages": …, "max_bytes": …, "ttl_secs": …}``) and ``log``
        the log (``{"max_age_secs": …}``), each field absent or 0 for the server's default."""
        body: dict[str, Any] = {"name": name, "scope": scope}
        if password is not None:
            body["password"] = password
        if storage is not None:
            body["storage"] = storage
        optional = {"max_messages": max_messages, "max_age_secs": max_age_secs, "cache": cache, "log": log}
        retention = {k: dict(v) if isinstance(v, Mapping) else v for k, v in optional.items() if v is not None}
        if retention:
            body["retention"] = retention
        return ChannelInfo.from_wire(await self._call("POST", ["v1", "channels"], "private", body=body))

    async def get_channel(self, name: str, *, scope: Scope = "private") -> ChannelInfo:
        """Describes a channel; ``channel_not_found`` when there is none."""
        return ChannelInfo.from_wire(await self._call("GET", ["v1", "channels", name], scope))

    async def delete_channel(self, name: str, *, scope: Scope = "private") -> None:
        """Deletes a channel; agents present are kicked with ``channel_deleted``."""
        await self._call("DELETE", ["v1", "channels", name], scope)

    async def mint_temporary_key(
        self,
        ttl_secs: int,
        capabilities: list[Capability],
        *,
        agent_names: list[str] | None = None,
        channels: list[str] | None = None,
        event_types: list[str] | None = None,
        scope: Scope | None = None,
        read_only: bool = False,
    ) -> TemporaryKey:
        """Mints a short-lived temporary key (original keys only). ``channels`` takes exact names
        or prefixes written ``prefix*``; a list left ``None`` means "any"."""
        body: dict[str, Any] = {"ttl_secs": ttl_secs, "capabilities": capabilities}
        for name, value in (
            ("agent_names", agent_names),
            ("channels", channels),
            ("event_types", event_types),
            ("scope", scope),
        ):
            if value is not None:
                body[name] = value
        if read_only:
            body["read_only"] = True
        return TemporaryKey.from_wire(await self._call("POST", ["v1", "keys", "temporary"], "private", body=body))

    async def revoke_key(self, id: str) -> None:
        """Revokes a key by id; the sockets using it (or, for a temporary key, any key attenuated
        from it) are closed with ``key_revoked``."""
        await self._call("DELETE", ["v1", "keys", id], "private")

    async def health(self) -> dict[str, Any]:
        """The server's health (``{"status": "ok"}``); needs no key."""
        result = await self._call("GET", ["healthz"], "private")
        assert isinstance(result, dict)
        return result

    async def _call(
        self,
        method: str,
        path: list[str],
        scope: Scope,
        *,
        body: Any = None,
        query: dict[str, Any] | None = None,
    ) -> Any:
        key = await resolve_key(self._key_source)
        params = dict(query or {})
        if scope != "private":
            params["scope"] = scope
        url = self.base_url + "/" + "/".join(quote(p, safe="") for p in path)
        if params:
            url += "?" + urlencode(params)
        headers = {"authorization": f"Bearer {key}", "accept": "application/json"}
        if self.channel_password is not None:
            headers["x-channel-password"] = self.channel_password
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["content-type"] = "application/json"
        request = urllib.request.Request(url, data=data, method=method, headers=headers)
        return await asyncio.to_thread(self._send, request)

    def _send(self, request: urllib.request.Request) -> Any:
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
        except urllib.error.HTTPError as e:
            raw = e.read()
            try:
                reply = json.loads(raw)
            except ValueError:
                reply = None
            if isinstance(reply, dict) and "code" in reply:
                raise error_from_reply(reply) from None
            raise SwitchboardError(f"HTTP {e.code}: {raw[:512].decode(errors='replace')}") from None
        except TimeoutError:
            raise RequestTimeoutError(f"no HTTP response within {self.timeout} s") from None
        except (urllib.error.URLError, OSError) as e:
            raise ConnectionFailedError(f"cannot reach {self.base_url}: {e}") from None
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            raise ProtocolError(f"the server answered something that is not JSON: {text[:200]!r}") from None
