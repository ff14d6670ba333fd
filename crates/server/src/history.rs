//! Reading history across the tiers: cache, log and database, one offset space.
//!
//! A read names a source (`poll_source`). `CACHE`, `LOG` and `DATABASE` read that tier
//! only; `AUTO` splits the requested offsets into the part the cache holds (the newest), the
//! part the log holds below it, and the part only the database holds (the oldest), and reads
//! them in the requested direction until the page is full. The parts touch without
//! overlapping, so the stitched page has no gap and no duplicate, and the reply lists which
//! tier served which offsets.
//!
//! Filters (time, sender, type, visibility) run inside each tier. The cache and the log
//! filter in memory, so a read examines at most [`MAX_SCAN`] of their messages; when that
//! stops it early, `next` says where to continue, exactly as when `limit` does.

use crate::error::{Result, err};
use crate::storage::Database;
use crate::storage::log::MessageLog;
use std::sync::Arc;
use switchboard_protocol::history::Direction;
use switchboard_protocol::{HistoryQuery, Message, PollSource, StoragePolicy, Tier, TierRange};

/// Messages the cache and log tiers examine for one read at most.
pub const MAX_SCAN: usize = 10_000;

/// Most log records read in one step (a read starts with what its page needs and doubles
/// while filters reject records).
const LOG_CHUNK: usize = 1_000;

/// What a read sees of one channel.
pub(crate) struct Tiers {
    /// The channel's id.
    pub channel_id: i64,
    /// The channel's name.
    pub name: String,
    /// Which tiers the channel keeps.
    pub policy: StoragePolicy,
    /// The cache's messages within the requested offsets, ascending.
    pub cache: Vec<Arc<Message>>,
    /// The cache's first offset (None: empty).
    pub cache_first: Option<u64>,
    /// The channel's head.
    pub head: u64,
    /// The log tier.
    pub log: Arc<dyn MessageLog>,
    /// The database tier.
    pub db: Arc<dyn Database>,
}

/// A page read from the tiers.
pub(crate) struct Read {
    pub messages: Vec<Message>,
    pub next: Option<u64>,
    pub sources: Vec<TierRange>,
}

/// One tier's part of the offsets, inclusive.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Part {
    tier: Tier,
    from: u64,
    to: u64,
}

/// Whether `m` passes the query's filters and is visible to `visible_to`.
pub(crate) fn matches(m: &Message, q: &HistoryQuery, visible_to: Option<&str>) -> bool {
    q.from_ts.is_none_or(|t| m.ts >= t)
        && q.to_ts.is_none_or(|t| m.ts <= t)
        && q.sender.as_ref().is_none_or(|s| *s == m.from)
        && q.kind.as_ref().is_none_or(|k| *k == m.kind)
        && visible_to.is_none_or(|a| m.to.as_deref().is_none_or(|to| to == a) || m.from == a)
}

impl Tiers {
    /// The requested offsets `lo..=hi` split into tier parts, ascending.
    fn plan(&self, source: PollSource, lo: u64, hi: u64) -> Result<Vec<Part>> {
        let kept = |yes: bool, what: &str| {
            if yes {
                Ok(())
            } else {
                Err(err!(
                    NoHistory,
                    "channel {} keeps no {what} (its storage policy is {}); read another source",
                    self.name,
                    self.policy.as_str()
                ))
            }
        };
        let cache_from = self.cache_first.unwrap_or(hi + 1).max(lo);
        let log = if self.policy.uses_log() {
            self.log.bounds(self.channel_id)
        } else {
            None
        };
        let part = |tier, from: u64, to: u64| (from <= to).then_some(Part { tier, from, to });
        Ok(match source {
            PollSource::Cache => {
                kept(self.policy.keeps_messages(), "history")?;
                part(Tier::Cache, cache_from, hi).into_iter().collect()
            }
            PollSource::Log => {
                kept(self.policy.uses_log(), "log")?;
                log.and_then(|(first, last)| part(Tier::Log, lo.max(first), hi.min(last)))
                    .into_iter()
                    .collect()
            }
            PollSource::Database => {
                kept(self.policy.uses_database(), "database")?;
                part(Tier::Database, lo, hi).into_iter().collect()
            }
            PollSource::Auto => {
                kept(self.policy.keeps_messages(), "history")?;
                let log_from = match log {
                    Some((first, _)) => first.max(lo).min(cache_from),
                    None => cache_from,
                };
                let mut parts = Vec::new();
                if self.policy.uses_database() {
                    parts.extend(part(Tier::Database, lo, hi.min(log_from.saturating_sub(1))));
                }
                parts.extend(part(
                    Tier::Log,
                    log_from,
                    hi.min(cache_from.saturating_sub(1)),
                ));
                parts.extend(part(Tier::Cache, cache_from, hi));
                parts
            }
        })
    }

    /// Reads a page: at most `limit` messages matching `q`, in `q.direction`.
    pub(crate) async fn read(
        &self,
        q: &HistoryQuery,
        source: PollSource,
        limit: usize,
        visible_to: Option<&str>,
    ) -> Result<Read> {
        let lo = q.from_offset.unwrap_or(1).max(1);
        let hi = q.to_offset.unwrap_or(u64::MAX).min(self.head);
        let mut parts = if lo <= hi {
            self.plan(source, lo, hi)?
        } else {
            self.plan(source, 1, 0)?
        };
        let forward = q.direction == Direction::Forward;
        if !forward {
            parts.reverse();
        }
        let want = limit + 1;
        let mut messages = Vec::new();
        let mut sources = Vec::new();
        let mut budget = MAX_SCAN;
        // Where an early stop (scan budget) left off, as the next offset to read.
        let mut stopped = None;
        for part in parts {
            let need = want - messages.len();
            let (found, examined_to, complete) = match part.tier {
                Tier::Cache => self.read_cache(part, q, need, visible_to, &mut budget),
                Tier::Log => {
                    self.read_log(part, q, need, visible_to, &mut budget)
                        .await?
                }
                Tier::Database => self.read_db(part, q, need, visible_to).await?,
            };
            messages.extend(found);
            let (from, to) = if forward {
                (part.from, examined_to)
            } else {
                (examined_to, part.to)
            };
            if from <= to {
                sources.push(TierRange {
                    tier: part.tier,
                    from,
                    to,
                });
            }
            if messages.len() >= want {
                break;
            }
            if !complete {
                stopped = Some(if forward {
                    examined_to + 1
                } else {
                    examined_to.saturating_sub(1)
                });
                break;
            }
        }
        let mut next = stopped;
        if messages.len() > limit {
            messages.truncate(limit);
            let last = messages.last().and_then(|m| m.offset).unwrap_or(0);
            next = Some(if forward {
                last + 1
            } else {
                last.saturating_sub(1)
            });
            // The last range ends where the page does.
            if let Some(range) = sources.last_mut() {
                if forward {
                    range.to = range.to.min(last);
                } else {
                    range.from = range.from.max(last);
                }
            }
            sources.retain(|r| r.from <= r.to);
        }
        sources.sort_by_key(|r| r.from);
        Ok(Read {
            messages,
            next,
            sources,
        })
    }

    /// Returns `(matches, the offset examined through, whether the part was finished)`.
    fn read_cache(
        &self,
        part: Part,
        q: &HistoryQuery,
        need: usize,
        visible_to: Option<&str>,
        budget: &mut usize,
    ) -> (Vec<Message>, u64, bool) {
        let forward = q.direction == Direction::Forward;
        let in_part = |m: &&Arc<Message>| m.offset.is_some_and(|o| o >= part.from && o <= part.to);
        let ordered: Box<dyn Iterator<Item = &Arc<Message>>> = if forward {
            Box::new(self.cache.iter().filter(in_part))
        } else {
            Box::new(self.cache.iter().rev().filter(in_part))
        };
        // Nothing examined yet: just outside the part.
        let mut examined = if forward { part.from - 1 } else { part.to + 1 };
        let mut found = Vec::new();
        for m in ordered {
            if found.len() >= need || *budget == 0 {
                return (found, examined, false);
            }
            *budget -= 1;
            examined = m.offset.unwrap_or(examined);
            if matches(m, q, visible_to) {
                found.push((**m).clone());
            }
        }
        (found, if forward { part.to } else { part.from }, true)
    }

    async fn read_log(
        &self,
        part: Part,
        q: &HistoryQuery,
        need: usize,
        visible_to: Option<&str>,
        budget: &mut usize,
    ) -> Result<(Vec<Message>, u64, bool)> {
        let forward = q.direction == Direction::Forward;
        let (mut from, mut to) = (part.from, part.to);
        let mut found = Vec::new();
        // Read what the page still needs; when filters reject records, read more each time.
        let mut want = need.clamp(16, LOG_CHUNK);
        loop {
            if found.len() >= need || *budget == 0 {
                let examined = if forward { from - 1 } else { to + 1 };
                let complete = if forward {
                    from > part.to
                } else {
                    to < part.from
                };
                return Ok((found, examined, complete));
            }
            let chunk = want.min(*budget);
            want = (want * 2).min(LOG_CHUNK);
            let read = self
                .log
                .read(self.channel_id, from, to, chunk, q.direction)
                .await?;
            *budget = budget.saturating_sub(read.len().max(1));
            let got_all = read.len() < chunk;
            for m in read {
                let o = m.offset.unwrap_or(0);
                if forward {
                    from = o + 1;
                } else {
                    to = o.saturating_sub(1);
                }
                if matches(&m, q, visible_to) {
                    found.push(m);
                    if found.len() >= need {
                        break;
                    }
                }
            }
            if got_all && found.len() < need {
                // The log has nothing more in the part (retention may have trimmed it).
                let examined = if forward { part.to } else { part.from };
                return Ok((found, examined, true));
            }
        }
    }

    async fn read_db(
        &self,
        part: Part,
        q: &HistoryQuery,
        need: usize,
        visible_to: Option<&str>,
    ) -> Result<(Vec<Message>, u64, bool)> {
        let forward = q.direction == Direction::Forward;
        let mut bounded = q.clone();
        bounded.from_offset = Some(part.from);
        bounded.to_offset = Some(part.to);
        let (found, newest) = self
            .db
            .history(
                self.channel_id,
                &self.name,
                &bounded,
                need as u32 - 1,
                visible_to,
            )
            .await?;
        if found.len() >= need {
            let last = found.last().and_then(|m| m.offset).unwrap_or(part.from);
            return Ok((found, last, false));
        }
        // The database is written behind the log: it examined only what it holds.
        let examined = if forward {
            part.to.min(newest)
        } else {
            part.from
        };
        Ok((found, examined, true))
    }
}
