//! Per channel, where each offset's record is: the in-memory index every log implementation
//! keeps (a record's place is an opaque `u64`: a segment and byte, a stream sequence).

use super::Record;
use dashmap::DashMap;
use std::collections::VecDeque;
use switchboard_protocol::history::Direction;

/// `locs[i]` holds offset `first + i`.
#[derive(Default)]
struct ChannelIndex {
    first: u64,
    locs: VecDeque<u64>,
}

/// Channel id to its offsets' places; sharded, so no lock is global.
#[derive(Default)]
pub(super) struct OffsetIndex(DashMap<i64, ChannelIndex>);

impl OffsetIndex {
    /// Indexes a durable record found at `loc`.
    pub(super) fn add(&self, record: &Record, loc: u64) {
        match record {
            Record::ChannelDeleted { channel_id } => {
                self.0.remove(channel_id);
            }
            Record::Message(r) => {
                let offset = r.message.offset.unwrap_or(0);
                let mut entry = self.0.entry(r.channel_id).or_default();
                let index = entry.value_mut();
                let next = index.first + index.locs.len() as u64;
                if offset < next && (index.first > 0 || !index.locs.is_empty()) {
                    // Held already, or trimmed: a record seen twice (a shared log's
                    // writer and its tail) is indexed once.
                    return;
                }
                if index.locs.is_empty() || next != offset {
                    // Offsets of a channel are consecutive; anything else starts the index
                    // over (only the newest run is served).
                    index.locs.clear();
                    index.first = offset;
                }
                index.locs.push_back(loc);
            }
        }
    }

    /// `(first, last)` offsets held for `channel_id`.
    pub(super) fn bounds(&self, channel_id: i64) -> Option<(u64, u64)> {
        let index = self.0.get(&channel_id)?;
        let n = index.locs.len() as u64;
        (n > 0).then(|| (index.first, index.first + n - 1))
    }

    /// The places of up to `max` offsets in `from..=to`, in `direction`.
    pub(super) fn places(
        &self,
        channel_id: i64,
        from: u64,
        to: u64,
        max: usize,
        direction: Direction,
    ) -> Vec<u64> {
        let Some(index) = self.0.get(&channel_id) else {
            return Vec::new();
        };
        if index.locs.is_empty() || from > to {
            return Vec::new();
        }
        let last = index.first + index.locs.len() as u64 - 1;
        let (lo, hi) = (from.max(index.first), to.min(last));
        if lo > hi {
            return Vec::new();
        }
        let range = (lo - index.first) as usize..=(hi - index.first) as usize;
        match direction {
            Direction::Forward => index.locs.range(range).take(max).copied().collect(),
            Direction::Backward => index.locs.range(range).rev().take(max).copied().collect(),
        }
    }

    /// The first offset held and its place.
    pub(super) fn front(&self, channel_id: i64) -> Option<(u64, u64)> {
        let index = self.0.get(&channel_id)?;
        Some((index.first, *index.locs.front()?))
    }

    /// Drops offsets below `below`.
    pub(super) fn trim(&self, channel_id: i64, below: u64) {
        if let Some(mut index) = self.0.get_mut(&channel_id) {
            while index.first < below && index.locs.pop_front().is_some() {
                index.first += 1;
            }
        }
    }

    /// Drops the first offset if it is still `first` (after it was examined unlocked).
    pub(super) fn pop_front_if(&self, channel_id: i64, first: u64) {
        if let Some(mut index) = self.0.get_mut(&channel_id)
            && index.first == first
        {
            index.locs.pop_front();
            index.first += 1;
        }
    }

    /// Drops, in every channel, the leading places that `gone` says are gone; returns per
    /// channel that lost any the highest offset dropped.
    pub(super) fn drop_leading(&self, gone: impl Fn(u64) -> bool) -> Vec<(i64, u64)> {
        let mut dropped = Vec::new();
        for mut entry in self.0.iter_mut() {
            let index = entry.value_mut();
            let mut highest = None;
            while index.locs.front().is_some_and(|l| gone(*l)) {
                index.locs.pop_front();
                highest = Some(index.first);
                index.first += 1;
            }
            if let Some(h) = highest {
                dropped.push((*entry.key(), h));
            }
        }
        dropped
    }
}
