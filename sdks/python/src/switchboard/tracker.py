"""Which offsets a channel has delivered, so a resume shows no gap and no duplicate.

The server replays everything after ``since`` on a rejoin; messages that were in the socket when
it dropped may arrive twice (once before, once in the replay). The tracker remembers the last
offset handed to the application and drops anything at or below it. Ephemeral messages have no
offset and always pass. Mirrors the Rust SDK's ``OffsetTracker``.
"""

from __future__ import annotations

from typing import Any

from .types import JoinReply


class OffsetTracker:
    """The resume position of one channel."""

    def __init__(self, since: int | None = None, epoch: str | None = None) -> None:
        self.last: int | None = since
        """The last offset delivered (or known to precede the subscription)."""
        self.epoch: str | None = epoch
        self.persistent = True

    def on_join(self, reply: JoinReply) -> None:
        """Takes a join reply into account: the replay after it starts at ``last + 1``."""
        self.epoch = reply.epoch
        self.persistent = reply.persistent
        if not reply.persistent:
            self.last = None
        elif reply.gap is not None:
            # Replay starts at `first_available`; after an epoch change offsets restart, so an
            # old high-water mark would swallow the new epoch's messages.
            self.last = max(reply.gap.first_available - 1, 0)
        elif self.last is None:
            # Live delivery starts after `head`.
            self.last = reply.head
        else:
            # `last > head` can only mean offsets were reset without us naming the epoch: trust
            # the server rather than drop new messages as duplicates.
            self.last = min(self.last, reply.head)

    def accept(self, offset: int | None) -> bool:
        """Whether a message with this offset is new; records it when it is."""
        if offset is None:
            return True
        if self.last is not None and offset <= self.last:
            return False
        self.last = offset
        return True

    def resume_params(self, params: dict[str, Any], session_id: str | None) -> dict[str, Any]:
        """The join parameters of a resume: the original ones plus ``since``, ``epoch`` and the
        session id that takes the agent name over."""
        out = dict(params)
        if self.persistent and self.last is not None:
            out["since"] = self.last
            if self.epoch is not None:
                out["epoch"] = self.epoch
        if session_id is not None:
            out["session_id"] = session_id
        return out
