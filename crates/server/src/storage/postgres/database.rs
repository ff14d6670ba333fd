//! [`Database`] for [`PostgresStore`]: every operation runs on a pooled connection, in one
//! transaction where it writes more than one statement, and again after a deadlock.

use super::directory::{delete_agent, load_agents, put_agent};
use super::inbox::{
    dead_letters, delete_dead_letter, inbox_batch, inbox_counts, inbox_prune, inbox_release,
};
use super::streams::{delete_stream, load_streams, put_stream};
use super::webhooks::{attempts, delete_webhook, insert_attempts, insert_webhook, load_webhooks};
use super::*;
use crate::storage::database::{Database, DbFuture, KvWrite};
use futures_util::future::BoxFuture;

impl Database for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn close(&self) -> BoxFuture<'static, ()> {
        let (pool, lock) = (self.pool.clone(), self.dir_lock.lock().take());
        Box::pin(async move {
            pool.close().await;
            drop(lock);
        })
    }

    fn get_setting(&self, name: &str) -> DbFuture<Option<String>> {
        let (pool, name) = (self.pool.clone(), name.to_owned());
        Box::pin(async move {
            retry(|| async {
                let mut conn = pool.acquire().await?;
                get_setting(&mut conn, &name).await
            })
            .await
        })
    }

    fn put_setting(&self, name: &str, value: &str) -> DbFuture<()> {
        let (pool, name, value) = (self.pool.clone(), name.to_owned(), value.to_owned());
        Box::pin(async move {
            retry(|| async {
                let mut conn = pool.acquire().await?;
                put_setting(&mut conn, &name, &value).await
            })
            .await
        })
    }

    fn init_setting(&self, name: &str, value: &str) -> DbFuture<String> {
        let (pool, name, value) = (self.pool.clone(), name.to_owned(), value.to_owned());
        Box::pin(async move { retry(|| init_setting(&pool, &name, &value)).await })
    }

    fn set_log(&self, identity: &str, applied: u64, new_epochs: bool) -> DbFuture<()> {
        let (pool, identity) = (self.pool.clone(), identity.to_owned());
        Box::pin(async move { retry(|| set_log(&pool, &identity, applied, new_epochs)).await })
    }

    fn apply_log(&self, batch: Vec<(u64, Record)>, last: u64) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| apply_log(&pool, &batch, last)).await })
    }

    fn durable_log_applied(&self) -> DbFuture<u64> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| durable_log_applied(&pool)).await })
    }

    fn load_keys(&self) -> DbFuture<(Vec<TenantRow>, Vec<KeyRow>)> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| load_keys(&pool)).await })
    }

    fn insert_tenant(&self, tenant: TenantRow) -> DbFuture<bool> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| insert_tenant(&pool, &tenant)).await })
    }

    fn insert_key(&self, key: KeyRow) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| insert_key(&pool, &key)).await })
    }

    fn revoke_key(&self, id: &str, now: i64) -> DbFuture<()> {
        let (pool, id) = (self.pool.clone(), id.to_owned());
        Box::pin(async move { retry(|| revoke_key(&pool, &id, now)).await })
    }

    fn revoke_tenant(&self, id: &str, now: i64) -> DbFuture<()> {
        let (pool, id) = (self.pool.clone(), id.to_owned());
        Box::pin(async move { retry(|| revoke_tenant(&pool, &id, now)).await })
    }

    fn load_temporary(&self, now: i64) -> DbFuture<Vec<TemporaryRow>> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| load_temporary(&pool, now)).await })
    }

    fn insert_temporary(&self, row: TemporaryRow) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| insert_temporary(&pool, &row)).await })
    }

    fn prune_temporary(&self, now: i64) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| prune_temporary(&pool, now)).await })
    }

    fn add_usage(&self, rows: Vec<UsageRow>) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| add_usage(&pool, &rows)).await })
    }

    fn usage_rows(&self, tenant: &str, from: i64, to: i64) -> DbFuture<Vec<UsageRow>> {
        let (pool, tenant) = (self.pool.clone(), tenant.to_owned());
        Box::pin(async move { retry(|| usage_rows(&pool, &tenant, from, to)).await })
    }

    fn storage_of(&self, tenant: &str) -> DbFuture<(u64, u64)> {
        let (pool, tenant) = (self.pool.clone(), tenant.to_owned());
        Box::pin(async move { retry(|| storage_of(&pool, &tenant)).await })
    }

    fn get_channel(&self, tenant: &str, name: &str) -> DbFuture<Option<ChannelRow>> {
        let (pool, tenant, name) = (self.pool.clone(), tenant.to_owned(), name.to_owned());
        Box::pin(async move {
            retry(|| async {
                let mut conn = pool.acquire().await?;
                get_channel(&mut conn, &tenant, &name).await
            })
            .await
        })
    }

    fn create_channel(&self, row: ChannelRow, max: usize) -> DbFuture<Option<(ChannelRow, bool)>> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| create_channel(&pool, &row, max)).await })
    }

    fn delete_channel(&self, id: i64) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| delete_channel(&pool, id)).await })
    }

    fn expired_channels(&self, now: i64) -> DbFuture<Vec<(String, String)>> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| expired_channels(&pool, now)).await })
    }

    fn set_epoch(&self, id: i64, epoch: &str) -> DbFuture<()> {
        let (pool, epoch) = (self.pool.clone(), epoch.to_owned());
        Box::pin(async move { retry(|| set_epoch(&pool, id, &epoch)).await })
    }

    fn set_pruned_through(&self, id: i64, through: u64) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| set_pruned_through(&pool, id, through)).await })
    }

    fn log_dropped(&self, dropped: Vec<(i64, u64)>) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| log_dropped(&pool, &dropped)).await })
    }

    fn bounds(&self, channel_id: i64) -> DbFuture<StoreStats> {
        let pool = self.pool.clone();
        Box::pin(async move {
            retry(|| async {
                let mut conn = pool.acquire().await?;
                bounds(&mut conn, channel_id).await
            })
            .await
        })
    }

    fn recent(&self, channel_id: i64, channel: &str, n: usize) -> DbFuture<Vec<Message>> {
        let (pool, channel) = (self.pool.clone(), channel.to_owned());
        Box::pin(async move { retry(|| recent(&pool, channel_id, &channel, n)).await })
    }

    fn recent_ids(&self, channel_id: i64, below: u64, n: usize) -> DbFuture<Vec<(String, u64)>> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| recent_ids(&pool, channel_id, below, n)).await })
    }

    fn history(
        &self,
        channel_id: i64,
        channel: &str,
        q: &HistoryQuery,
        limit: u32,
        visible_to: Option<&str>,
    ) -> DbFuture<(Vec<Message>, u64)> {
        let (pool, channel, q, visible_to) = (
            self.pool.clone(),
            channel.to_owned(),
            q.clone(),
            visible_to.map(str::to_owned),
        );
        Box::pin(async move {
            retry(|| {
                history(
                    &pool,
                    channel_id,
                    &channel,
                    &q,
                    limit,
                    visible_to.as_deref(),
                )
            })
            .await
        })
    }

    fn prune(&self, channel_id: i64, below: u64, before_ts: i64) -> DbFuture<StoreStats> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| prune(&pool, channel_id, below, before_ts)).await })
    }

    fn inbox_counts(&self, channel_id: i64) -> DbFuture<Vec<(String, u32)>> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| inbox_counts(&pool, channel_id)).await })
    }

    fn inbox_batch(
        &self,
        channel_id: i64,
        recipient: &str,
        batch: InboxBatch,
        limits: InboxLimits,
        now: i64,
    ) -> DbFuture<InboxBatchResult> {
        let (pool, recipient) = (self.pool.clone(), recipient.to_owned());
        Box::pin(async move {
            retry(|| inbox_batch(&pool, channel_id, &recipient, &batch, limits, now)).await
        })
    }

    fn inbox_release(
        &self,
        channel_id: i64,
        recipient: &str,
        ids: Vec<String>,
        now: i64,
    ) -> DbFuture<()> {
        let (pool, recipient) = (self.pool.clone(), recipient.to_owned());
        Box::pin(
            async move { retry(|| inbox_release(&pool, channel_id, &recipient, &ids, now)).await },
        )
    }

    fn dead_letters(
        &self,
        channel_id: i64,
        tenant: &str,
        recipient: Option<&str>,
        after: (i64, u64),
        limit: u32,
    ) -> DbFuture<Vec<DeadRow>> {
        let (pool, tenant, recipient) = (
            self.pool.clone(),
            tenant.to_owned(),
            recipient.map(str::to_owned),
        );
        Box::pin(async move {
            retry(|| {
                dead_letters(
                    &pool,
                    channel_id,
                    &tenant,
                    recipient.as_deref(),
                    after,
                    limit,
                )
            })
            .await
        })
    }

    fn delete_dead_letter(&self, channel_id: i64, tenant: &str, id: &str) -> DbFuture<bool> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_owned());
        Box::pin(async move { retry(|| delete_dead_letter(&pool, channel_id, &tenant, &id)).await })
    }

    fn inbox_prune(&self, now: i64, retention_ms: i64) -> DbFuture<usize> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| inbox_prune(&pool, now, retention_ms)).await })
    }

    fn kv_get(&self, channel_id: i64, key: &str, now: i64) -> DbFuture<Option<KvRow>> {
        let (pool, key) = (self.pool.clone(), key.to_owned());
        Box::pin(async move { retry(|| kv_get(&pool, channel_id, &key, now)).await })
    }

    fn kv_put(&self, write: KvWrite) -> DbFuture<std::result::Result<KvRow, KvRefused>> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| kv_put(&pool, &write)).await })
    }

    fn kv_delete(
        &self,
        channel_id: i64,
        key: &str,
        expected: Option<u64>,
        now: i64,
    ) -> DbFuture<std::result::Result<Option<u64>, KvRefused>> {
        let (pool, key) = (self.pool.clone(), key.to_owned());
        Box::pin(async move { retry(|| kv_delete(&pool, channel_id, &key, expected, now)).await })
    }

    fn kv_list(
        &self,
        channel_id: i64,
        prefix: &str,
        after: &str,
        limit: u32,
        now: i64,
    ) -> DbFuture<Vec<KvRow>> {
        let (pool, prefix, after) = (self.pool.clone(), prefix.to_owned(), after.to_owned());
        Box::pin(
            async move { retry(|| kv_list(&pool, channel_id, &prefix, &after, limit, now)).await },
        )
    }

    fn kv_prune(&self, now: i64) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| kv_prune(&pool, now)).await })
    }

    fn load_agents(&self) -> DbFuture<Vec<AgentRow>> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| load_agents(&pool)).await })
    }

    fn put_agent(&self, row: AgentRow) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| put_agent(&pool, &row)).await })
    }

    fn delete_agent(&self, tenant: &str, name: &str) -> DbFuture<bool> {
        let (pool, tenant, name) = (self.pool.clone(), tenant.to_owned(), name.to_owned());
        Box::pin(async move { retry(|| delete_agent(&pool, &tenant, &name)).await })
    }

    fn load_streams(&self) -> DbFuture<Vec<StreamRow>> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| load_streams(&pool)).await })
    }

    fn put_stream(&self, row: StreamRow) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| put_stream(&pool, &row)).await })
    }

    fn delete_stream(&self, id: &str) -> DbFuture<()> {
        let (pool, id) = (self.pool.clone(), id.to_owned());
        Box::pin(async move { retry(|| delete_stream(&pool, &id)).await })
    }

    fn load_webhooks(&self) -> DbFuture<Vec<WebhookRow>> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| load_webhooks(&pool)).await })
    }

    fn insert_webhook(&self, row: WebhookRow) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| insert_webhook(&pool, &row)).await })
    }

    fn delete_webhook(&self, tenant: &str, id: &str) -> DbFuture<bool> {
        let (pool, tenant, id) = (self.pool.clone(), tenant.to_owned(), id.to_owned());
        Box::pin(async move { retry(|| delete_webhook(&pool, &tenant, &id)).await })
    }

    fn insert_attempts(&self, rows: Vec<AttemptRow>, keep: u64) -> DbFuture<()> {
        let pool = self.pool.clone();
        Box::pin(async move { retry(|| insert_attempts(&pool, &rows, keep)).await })
    }

    fn attempts(&self, webhook_id: &str, limit: u32) -> DbFuture<Vec<AttemptRow>> {
        let (pool, id) = (self.pool.clone(), webhook_id.to_owned());
        Box::pin(async move { retry(|| attempts(&pool, &id, limit)).await })
    }
}
