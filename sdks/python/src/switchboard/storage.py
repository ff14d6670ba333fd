"""The channel's durable key-value store (spec/protocol.md, "Channel storage"), as
``channel.storage`` / ``agent.storage``.

Reads in flight when the connection drops are sent again after the rejoin. Writes are not: the
server may have applied one whose reply was lost, and sending it again could overwrite a newer
value (or turn a successful compare-and-set into a ``version_conflict``), so a write in flight
fails with :class:`~switchboard.DisconnectedError` and the application reads the entry and
decides. Writes made while the connection is down wait for the rejoin like every request.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from . import frames
from .errors import ErrorCode, InvalidRequestError
from .types import StorageEntry, StoragePage

if TYPE_CHECKING:
    from .channel import ChannelState
    from .client import Client


class ChannelStorage:
    """The storage of one joined channel: keys of 1–256 bytes without control characters, values
    any JSON up to the server's ``max_kv_value_bytes`` (64 KiB by default).

    Refusals raise the error of their code: ``version_conflict`` (:class:`ConflictError`),
    ``not_found`` (:class:`NotFoundError`), ``too_many_keys`` (:class:`RateLimitedError`),
    ``message_too_large`` and ``invalid_payload`` (:class:`InvalidRequestError`), ``forbidden``
    (:class:`PermissionDeniedError`: a temporary key without the ``kv`` capability, or a
    ``read_only`` one writing).
    """

    def __init__(self, client: Client, state: ChannelState) -> None:
        self._client = client
        self._state = state

    async def put(self, key: str, value: Any, *, version: int | None = None, ttl_secs: int | None = None) -> StorageEntry:
        """Writes ``value`` under ``key`` and returns the new entry once it is durable.

        ``version`` makes the write conditional: only if the key is at that version now (``0``:
        only if it is absent), else ``version_conflict``. ``ttl_secs``: the entry reads as absent
        after that many seconds.
        """
        _check_key(key)
        payload: dict[str, Any] = {"key": key, "value": value}
        if version is not None:
            payload["version"] = _count("version", version, 0)
        if ttl_secs is not None:
            payload["ttl_secs"] = _count("ttl_secs", ttl_secs, 1)
        response = await self._client.request(self._state, frames.KV_PUT, payload, retry=False)
        return StorageEntry.from_wire(response)

    async def get(self, key: str) -> StorageEntry:
        """The entry under ``key``; raises :class:`NotFoundError` (``not_found``) when there is
        none or it expired."""
        _check_key(key)
        response = await self._client.request(self._state, frames.KV_GET, {"key": key}, retry=True)
        return StorageEntry.from_wire(response)

    async def delete(self, key: str, *, version: int | None = None) -> None:
        """Deletes ``key`` (only at ``version`` when given, else ``version_conflict``); raises
        :class:`NotFoundError` when there is no such key."""
        _check_key(key)
        payload: dict[str, Any] = {"key": key}
        if version is not None:
            payload["version"] = _count("version", version, 0)
        await self._client.request(self._state, frames.KV_DELETE, payload, retry=False)

    async def list(self, *, prefix: str | None = None, after: str | None = None, limit: int | None = None) -> StoragePage:
        """One page of entries in key order (``limit`` 1–1000, default 100); pass ``page.next``
        as ``after`` for the following page."""
        query: dict[str, Any] = {}
        if prefix is not None:
            query["prefix"] = prefix
        if after is not None:
            query["after"] = after
        if limit is not None:
            query["limit"] = _count("limit", limit, 1)
        response = await self._client.request(self._state, frames.KV_LIST, query, retry=True)
        return StoragePage.from_wire(response)

    async def items(
        self, *, prefix: str | None = None, after: str | None = None, page_size: int | None = None
    ) -> AsyncIterator[StorageEntry]:
        """Every entry (with ``prefix``: every such entry) in key order, a page of ``page_size``
        at a time: ``async for entry in agent.storage.items(prefix="score/")``."""
        while True:
            page = await self.list(prefix=prefix, after=after, limit=page_size)
            for entry in page.entries:
                yield entry
            if page.next is None:
                return
            after = page.next


def _check_key(key: object) -> None:
    if not isinstance(key, str) or not key:
        raise InvalidRequestError(
            "a storage key is a non-empty string (1–256 bytes, no control characters)", ErrorCode.INVALID_PAYLOAD
        )


def _count(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidRequestError(f"{name} is an integer ≥ {minimum}, not {value!r}", ErrorCode.INVALID_PAYLOAD)
    return value
