//! Which offsets a channel has already delivered, so a resume shows no gap and no duplicate.
//!
//! The server replays everything after `since` on a rejoin; messages that were in the socket
//! when it dropped may arrive twice (once before, once in the replay). The tracker remembers the
//! last offset handed to the application and drops anything at or below it. Ephemeral messages
//! have no offset and always pass.

use switchboard_protocol::{JoinParams, JoinReply};

/// The resume position of one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OffsetTracker {
    /// The last offset delivered to the application (or known to precede the subscription).
    last: Option<u64>,
    /// The epoch `last` belongs to.
    epoch: Option<String>,
    /// Whether the channel has offsets at all.
    persistent: bool,
}

impl OffsetTracker {
    /// A tracker starting where the application asked to start.
    pub(crate) fn new(params: &JoinParams) -> Self {
        OffsetTracker {
            last: params.since,
            epoch: params.epoch.clone(),
            persistent: true,
        }
    }

    /// The last offset delivered.
    #[cfg(test)]
    pub(crate) fn last(&self) -> Option<u64> {
        self.last
    }

    /// Takes a join reply into account: the replay after it starts at `last + 1`.
    pub(crate) fn on_join(&mut self, reply: &JoinReply) {
        self.epoch = Some(reply.epoch.clone());
        self.persistent = reply.persistent;
        if !reply.persistent {
            self.last = None;
            return;
        }
        self.last = Some(match (&reply.gap, self.last) {
            // Replay starts at `first_available`; after an epoch change offsets restart, so an
            // old high-water mark would swallow the new epoch's messages.
            (Some(gap), _) => gap.first_available.saturating_sub(1),
            // Live delivery starts after `head`.
            (None, None) => reply.head,
            // `last > head` can only mean offsets were reset without us naming the epoch: trust
            // the server rather than drop new messages as duplicates.
            (None, Some(last)) => last.min(reply.head),
        });
    }

    /// Whether a message with this offset is new; records it when it is.
    pub(crate) fn accept(&mut self, offset: Option<u64>) -> bool {
        let Some(offset) = offset else {
            return true;
        };
        if self.last.is_some_and(|last| offset <= last) {
            return false;
        }
        self.last = Some(offset);
        true
    }

    /// The join parameters of a resume: the original ones plus `since`, `epoch` and the
    /// session id that takes the agent name over.
    pub(crate) fn resume_params(
        &self,
        params: &JoinParams,
        session_id: Option<&str>,
    ) -> JoinParams {
        let mut params = params.clone();
        if self.persistent
            && let Some(last) = self.last
        {
            params.since = Some(last);
            params.epoch = self.epoch.clone();
        }
        if let Some(session_id) = session_id {
            params.session_id = Some(session_id.to_owned());
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchboard_protocol::{Gap, GapReason, Scope};

    fn reply(head: u64, epoch: &str, gap: Option<Gap>) -> JoinReply {
        JoinReply {
            channel: "room".into(),
            scope: Scope::Private,
            agent_name: "a".into(),
            session_id: "s1".into(),
            epoch: epoch.into(),
            head,
            persistent: true,
            gap,
        }
    }

    #[test]
    fn fresh_join_starts_after_head() {
        let mut t = OffsetTracker::new(&JoinParams::new("a"));
        t.on_join(&reply(10, "e1", None));
        assert!(!t.accept(Some(10)));
        assert!(t.accept(Some(11)));
        assert!(!t.accept(Some(11)), "duplicate");
        assert!(t.accept(None), "ephemeral always passes");
        assert!(t.accept(Some(13)), "a filtered-out offset is not a gap");
        assert_eq!(t.last(), Some(13));
    }

    #[test]
    fn resume_replays_after_last_delivered() {
        let mut params = JoinParams::new("a");
        params.since = Some(4);
        let mut t = OffsetTracker::new(&params);
        t.on_join(&reply(10, "e1", None));
        assert!(!t.accept(Some(4)));
        assert!(t.accept(Some(5)));
        assert!(t.accept(Some(6)));
        let resume = t.resume_params(&params, Some("s1"));
        assert_eq!(resume.since, Some(6));
        assert_eq!(resume.epoch.as_deref(), Some("e1"));
        assert_eq!(resume.session_id.as_deref(), Some("s1"));
        // Messages 5 and 6 arrive again in the replay, then 7 is new.
        t.on_join(&reply(12, "e1", None));
        assert!(!t.accept(Some(5)));
        assert!(!t.accept(Some(6)));
        assert!(t.accept(Some(7)));
    }

    #[test]
    fn gaps_move_the_mark() {
        let mut t = OffsetTracker::new(&JoinParams::new("a"));
        t.on_join(&reply(100, "e1", None));
        assert!(t.accept(Some(101)));
        // The history was reset: offsets restart at 1 in a new epoch.
        t.on_join(&reply(
            3,
            "e2",
            Some(Gap {
                reason: GapReason::EpochChanged,
                first_available: 1,
            }),
        ));
        assert!(t.accept(Some(1)));
        let resume = t.resume_params(&JoinParams::new("a"), None);
        assert_eq!(
            (resume.since, resume.epoch.as_deref()),
            (Some(1), Some("e2"))
        );
        // Retention dropped 2..=49.
        t.on_join(&reply(
            60,
            "e2",
            Some(Gap {
                reason: GapReason::Retention,
                first_available: 50,
            }),
        ));
        assert!(!t.accept(Some(49)));
        assert!(t.accept(Some(50)));
    }

    #[test]
    fn since_beyond_head_is_clamped() {
        let mut params = JoinParams::new("a");
        params.since = Some(500);
        let mut t = OffsetTracker::new(&params);
        t.on_join(&reply(20, "e9", None));
        assert!(t.accept(Some(21)));
    }

    #[test]
    fn ephemeral_channels_have_no_resume_position() {
        let mut t = OffsetTracker::new(&JoinParams::new("a"));
        let mut r = reply(0, "e1", None);
        r.persistent = false;
        t.on_join(&r);
        assert!(t.accept(None));
        let resume = t.resume_params(&JoinParams::new("a"), Some("s"));
        assert_eq!(resume.since, None);
        assert_eq!(resume.session_id.as_deref(), Some("s"));
    }
}
