//! The WebRTC signaling relay: `signal` pushes carry offers, answers and ICE candidates to one
//! named agent in the channel. They are never stored.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// Most bytes of a signal's `data` (an SDP offer is a few KiB).
pub const MAX_SIGNAL_BYTES: usize = 64 * 1024;

/// What a signal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignalKind {
    /// An SDP offer.
    Offer,
    /// An SDP answer.
    Answer,
    /// An ICE candidate.
    Ice,
    /// The call is over.
    Bye,
}

/// `signal` push, client → server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Signal {
    /// The agent it is for (it must be present and have joined with `enable_webrtc_relay`).
    pub to: String,
    /// What it is.
    pub kind: SignalKind,
    /// The SDP or candidate, as the browser gave it.
    pub data: Box<RawValue>,
}

/// `signal` event, server → the named agent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignalEvent {
    /// The sending agent.
    pub from: String,
    /// What it is.
    pub kind: SignalKind,
    /// The SDP or candidate.
    pub data: Box<RawValue>,
}

impl PartialEq for SignalEvent {
    fn eq(&self, other: &Self) -> bool {
        self.from == other.from && self.kind == other.kind && self.data.get() == other.data.get()
    }
}
