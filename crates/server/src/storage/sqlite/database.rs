//! [`Database`] for [`SqliteStore`]: writes run in order on the writer thread, reads on
//! pooled read-only connections.

use super::directory::{delete_agent, load_agents, put_agent};
use super::inbox::{
    dead_letters, delete_dead_letter, inbox_counts, inbox_lease, inbox_next_visible, inbox_prune,
    inbox_release, inbox_settle,
};
use super::streams::{delete_stream, load_streams, put_stream};
use super::webhooks::{attempts, delete_webhook, insert_attempts, insert_webhook, load_webhooks};
use super::*;
use crate::storage::database::{Database, DbFuture, KvWrite};
use crate::storage::rows::*;
use futures_util::future::BoxFuture;

impl Database for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        // Joining the writer thread blocks: hand it the sender and thread to finish.
        let writer = self.writer.lock().take();
        let thread = self.thread.lock().take();
        let lock = self.lock.lock().take();
        self.readers.idle.lock().clear();
        Box::pin(async move {
            drop(writer);
            if let Some(thread) = thread {
                let _ = tokio::task::spawn_blocking(move || thread.join()).await;
            }
            drop(lock);
        })
    }

    fn get_setting(&self, name: &str) -> DbFuture<Option<String>> {
        let name = name.to_owned();
        self.read(move |c| get_setting(c, &name))
    }

    fn put_setting(&self, name: &str, value: &str) -> DbFuture<()> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |c| put_setting(c, &name, &value))
    }

    fn init_setting(&self, name: &str, value: &str) -> DbFuture<String> {
        let (name, value) = (name.to_owned(), value.to_owned());
        self.write(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO settings (name, value) VALUES (?1, ?2)",
                rusqlite::params![name, value],
            )?;
            Ok(get_setting(c, &name)?.unwrap_or(value))
        })
    }

    fn set_log(&self, identity: &str, applied: u64, new_epochs: bool) -> DbFuture<()> {
        let identity = identity.to_owned();
        self.write(move |c| {
            let tx = c.unchecked_transaction()?;
            if new_epochs {
                new_log_epochs(&tx)?;
            }
            put_setting(&tx, LOG_IDENTITY, &identity)?;
            put_setting(&tx, LOG_APPLIED, &applied.to_string())?;
            tx.commit()
        })
    }

    fn apply_log(&self, batch: Vec<(u64, Record)>, last: u64) -> DbFuture<()> {
        self.write(move |c| apply_log(c, &batch, last))
    }

    fn durable_log_applied(&self) -> DbFuture<u64> {
        self.write(durable_log_applied)
    }

    fn load_keys(&self) -> DbFuture<(Vec<TenantRow>, Vec<KeyRow>)> {
        self.read(load_keys)
    }

    fn insert_tenant(&self, tenant: TenantRow) -> DbFuture<bool> {
        self.write(move |c| insert_tenant(c, &tenant))
    }

    fn insert_key(&self, key: KeyRow) -> DbFuture<()> {
        self.write(move |c| insert_key(c, &key))
    }

    fn revoke_key(&self, id: &str, now: i64) -> DbFuture<()> {
        let id = id.to_owned();
        self.write(move |c| revoke_key(c, &id, now))
    }

    fn revoke_tenant(&self, id: &str, now: i64) -> DbFuture<()> {
        let id = id.to_owned();
        self.write(move |c| revoke_tenant(c, &id, now))
    }

    fn load_temporary(&self, now: i64) -> DbFuture<Vec<TemporaryRow>> {
        self.read(move |c| load_temporary(c, now))
    }

    fn insert_temporary(&self, row: TemporaryRow) -> DbFuture<()> {
        self.write(move |c| insert_temporary(c, &row))
    }

    fn prune_temporary(&self, now: i64) -> DbFuture<()> {
        self.write(move |c| prune_temporary(c, now))
    }

    fn add_usage(&self, rows: Vec<UsageRow>) -> DbFuture<()> {
        self.write(move |c| add_usage(c, &rows))
    }

    fn usage_rows(&self, tenant: &str, from: i64, to: i64) -> DbFuture<Vec<UsageRow>> {
        let tenant = tenant.to_owned();
        self.read(move |c| usage_rows(c, &tenant, from, to))
    }

    fn storage_of(&self, tenant: &str) -> DbFuture<(u64, u64)> {
        let tenant = tenant.to_owned();
        self.read(move |c| storage_of(c, &tenant))
    }

    fn get_channel(&self, tenant: &str, name: &str) -> DbFuture<Option<ChannelRow>> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.read(move |c| get_channel(c, &tenant, &name))
    }

    fn create_channel(&self, row: ChannelRow, max: usize) -> DbFuture<Option<(ChannelRow, bool)>> {
        self.write(move |c| create_channel(c, &row, max))
    }

    fn delete_channel(&self, id: i64) -> DbFuture<()> {
        self.write(move |c| delete_channel(c, id))
    }

    fn expired_channels(&self, now: i64) -> DbFuture<Vec<(String, String)>> {
        self.read(move |c| expired_channels(c, now))
    }

    fn set_epoch(&self, id: i64, epoch: &str) -> DbFuture<()> {
        let epoch = epoch.to_owned();
        self.write(move |c| set_epoch(c, id, &epoch))
    }

    fn set_pruned_through(&self, id: i64, through: u64) -> DbFuture<()> {
        self.write(move |c| set_pruned_through(c, id, through))
    }

    fn log_dropped(&self, dropped: Vec<(i64, u64)>) -> DbFuture<()> {
        self.write(move |c| log_dropped(c, &dropped))
    }

    fn bounds(&self, channel_id: i64) -> DbFuture<StoreStats> {
        self.read(move |c| bounds(c, channel_id))
    }

    fn recent(&self, channel_id: i64, channel: &str, n: usize) -> DbFuture<Vec<Message>> {
        let channel = channel.to_owned();
        self.read(move |c| recent(c, channel_id, &channel, n))
    }

    fn recent_ids(&self, channel_id: i64, below: u64, n: usize) -> DbFuture<Vec<(String, u64)>> {
        self.read(move |c| recent_ids(c, channel_id, below, n))
    }

    fn history(
        &self,
        channel_id: i64,
        channel: &str,
        q: &HistoryQuery,
        limit: u32,
        visible_to: Option<&str>,
    ) -> DbFuture<(Vec<Message>, u64)> {
        let (channel, q, visible_to) =
            (channel.to_owned(), q.clone(), visible_to.map(str::to_owned));
        self.read(move |c| {
            let found = history(c, channel_id, &channel, &q, limit, visible_to.as_deref())?;
            Ok((found, bounds(c, channel_id)?.last))
        })
    }

    fn prune(&self, channel_id: i64, below: u64, before_ts: i64) -> DbFuture<StoreStats> {
        self.write(move |c| {
            prune(c, channel_id, below, before_ts)?;
            bounds(c, channel_id)
        })
    }

    fn inbox_counts(&self, channel_id: i64) -> DbFuture<Vec<(String, u32)>> {
        self.read(move |c| inbox_counts(c, channel_id))
    }

    fn inbox_batch(
        &self,
        channel_id: i64,
        recipient: &str,
        batch: InboxBatch,
        limits: InboxLimits,
        now: i64,
    ) -> DbFuture<InboxBatchResult> {
        let recipient = recipient.to_owned();
        self.write(move |c| {
            let tx = c.unchecked_transaction()?;
            let mut result = InboxBatchResult::default();
            for settle in &batch.settle {
                result.settled.push(inbox_settle(
                    &tx,
                    channel_id,
                    &recipient,
                    now,
                    settle,
                    limits.max_rejections.max(1),
                )?);
            }
            if let Some((max, visibility_ms)) = batch.lease {
                (result.leased, result.dead) = inbox_lease(
                    &tx,
                    channel_id,
                    &recipient,
                    now,
                    visibility_ms,
                    max,
                    limits.max_deliveries.max(1),
                )?;
            }
            result.next_visible = inbox_next_visible(&tx, channel_id, &recipient, now)?;
            tx.commit()?;
            Ok(result)
        })
    }

    fn inbox_release(
        &self,
        channel_id: i64,
        recipient: &str,
        ids: Vec<String>,
        now: i64,
    ) -> DbFuture<()> {
        let recipient = recipient.to_owned();
        self.write(move |c| inbox_release(c, channel_id, &recipient, &ids, now))
    }

    fn dead_letters(
        &self,
        channel_id: i64,
        tenant: &str,
        recipient: Option<&str>,
        after: (i64, u64),
        limit: u32,
    ) -> DbFuture<Vec<DeadRow>> {
        let (tenant, recipient) = (tenant.to_owned(), recipient.map(str::to_owned));
        self.read(move |c| dead_letters(c, channel_id, &tenant, recipient.as_deref(), after, limit))
    }

    fn delete_dead_letter(&self, channel_id: i64, tenant: &str, id: &str) -> DbFuture<bool> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |c| delete_dead_letter(c, channel_id, &tenant, &id))
    }

    fn inbox_prune(&self, now: i64, retention_ms: i64) -> DbFuture<usize> {
        self.write(move |c| inbox_prune(c, now, retention_ms))
    }

    fn kv_get(&self, channel_id: i64, key: &str, now: i64) -> DbFuture<Option<KvRow>> {
        let key = key.to_owned();
        self.read(move |c| kv_get(c, channel_id, &key, now))
    }

    fn kv_put(&self, w: KvWrite) -> DbFuture<std::result::Result<KvRow, KvRefused>> {
        self.write(move |c| {
            kv_put(
                c,
                w.channel_id,
                &w.key,
                &w.value,
                w.expected,
                w.expires_at,
                &w.by,
                w.now,
                w.max_keys,
            )
        })
    }

    fn kv_delete(
        &self,
        channel_id: i64,
        key: &str,
        expected: Option<u64>,
        now: i64,
    ) -> DbFuture<std::result::Result<Option<u64>, KvRefused>> {
        let key = key.to_owned();
        self.write(move |c| kv_delete(c, channel_id, &key, expected, now))
    }

    fn kv_list(
        &self,
        channel_id: i64,
        prefix: &str,
        after: &str,
        limit: u32,
        now: i64,
    ) -> DbFuture<Vec<KvRow>> {
        let (prefix, after) = (prefix.to_owned(), after.to_owned());
        self.read(move |c| kv_list(c, channel_id, &prefix, &after, limit, now))
    }

    fn kv_prune(&self, now: i64) -> DbFuture<()> {
        self.write(move |c| kv_prune(c, now))
    }

    fn load_agents(&self) -> DbFuture<Vec<AgentRow>> {
        self.read(load_agents)
    }

    fn put_agent(&self, row: AgentRow) -> DbFuture<()> {
        self.write(move |c| put_agent(c, &row))
    }

    fn delete_agent(&self, tenant: &str, name: &str) -> DbFuture<bool> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.write(move |c| delete_agent(c, &tenant, &name))
    }

    fn load_streams(&self) -> DbFuture<Vec<StreamRow>> {
        self.read(load_streams)
    }

    fn put_stream(&self, row: StreamRow) -> DbFuture<()> {
        self.write(move |c| put_stream(c, &row))
    }

    fn delete_stream(&self, id: &str) -> DbFuture<()> {
        let id = id.to_owned();
        self.write(move |c| delete_stream(c, &id))
    }

    fn load_webhooks(&self) -> DbFuture<Vec<WebhookRow>> {
        self.read(load_webhooks)
    }

    fn insert_webhook(&self, row: WebhookRow) -> DbFuture<()> {
        self.write(move |c| insert_webhook(c, &row))
    }

    fn delete_webhook(&self, tenant: &str, id: &str) -> DbFuture<bool> {
        let (tenant, id) = (tenant.to_owned(), id.to_owned());
        self.write(move |c| delete_webhook(c, &tenant, &id))
    }

    fn insert_attempts(&self, rows: Vec<AttemptRow>, keep: u64) -> DbFuture<()> {
        self.write(move |c| insert_attempts(c, &rows, keep))
    }

    fn attempts(&self, webhook_id: &str, limit: u32) -> DbFuture<Vec<AttemptRow>> {
        let id = webhook_id.to_owned();
        self.read(move |c| attempts(c, &id, limit))
    }
}
