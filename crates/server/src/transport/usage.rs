//! `GET /v1/usage`: a tenant's usage per key and hour or day, with totals, connections now and
//! storage now. An original key reads its own tenant's; an admin key names the tenant.

use super::http::{Params, bearer};
use crate::App;
use crate::auth::Caller;
use crate::error::{Result, err};
use crate::usage::hour_of;
use axum::extract::State;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use switchboard_protocol::{StorageUsage, UsageCounts, UsageEntry, UsagePeriod, UsageReport};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/v1/usage", get(usage))
}

#[derive(Deserialize)]
struct UsageQuery {
    #[serde(default)]
    period: UsagePeriod,
    /// Inclusive, ms (default: 30 days ago).
    from: Option<i64>,
    /// Exclusive, ms (default: now, this hour included).
    to: Option<i64>,
    /// The tenant (admin keys).
    tenant: Option<String>,
}

const DAY_MS: i64 = 86_400_000;

async fn usage(
    State(app): State<Arc<App>>,
    parts: Parts,
    Params(q): Params<UsageQuery>,
) -> Result<Json<UsageReport>> {
    let tenant = match app.keys.verify_any(bearer(&parts)?)? {
        Caller::Admin { .. } => q.tenant.clone().ok_or_else(|| {
            err!(
                InvalidPayload,
                "an admin key names the tenant: ?tenant=<id>"
            )
        })?,
        Caller::Tenant(p) => {
            p.original_only("reading usage")?;
            if q.tenant.as_ref().is_some_and(|t| **t != *p.tenant_id) {
                return Err(err!(
                    Forbidden,
                    "a tenant key reads its own tenant's usage only"
                ));
            }
            p.tenant_id.to_string()
        }
    };
    if app.keys.tenant_info(&tenant).is_none() {
        return Err(err!(NotFound, "no tenant named {tenant:?}"));
    }
    let now = crate::now_ms();
    let to = q.to.unwrap_or(hour_of(now) + 3_600_000);
    let from = q.from.unwrap_or(to - 30 * DAY_MS);
    if from >= to || to - from > 400 * DAY_MS {
        return Err(err!(
            InvalidPayload,
            "from must be before to, at most 400 days apart"
        ));
    }
    // Storage is counted in the database, which is written just behind the log.
    app.materializer.wait_for(app.log.end()).await;
    let (stored, storage) = (
        app.store.usage_rows(&tenant, from, to).await?,
        app.store.storage_of(&tenant).await?,
    );
    // What was counted since the last flush belongs to the current hour.
    let pending = app
        .usage
        .pending(Some(&tenant))
        .into_iter()
        .filter(|r| r.period_start >= from && r.period_start < to);
    let bucket = |start: i64| match q.period {
        UsagePeriod::Hour => start,
        UsagePeriod::Day => start - start.rem_euclid(DAY_MS),
    };
    let mut rows: BTreeMap<(i64, String), UsageCounts> = BTreeMap::new();
    for r in stored.into_iter().chain(pending) {
        let c = rows.entry((bucket(r.period_start), r.key_id)).or_default();
        c.messages_in += r.messages_in;
        c.messages_out += r.messages_out;
        c.bytes_in += r.bytes_in;
        c.bytes_out += r.bytes_out;
        c.peak_connections = c.peak_connections.max(r.peak_connections);
    }
    let mut totals = UsageCounts::default();
    for c in rows.values() {
        totals.messages_in += c.messages_in;
        totals.messages_out += c.messages_out;
        totals.bytes_in += c.bytes_in;
        totals.bytes_out += c.bytes_out;
        totals.peak_connections = totals.peak_connections.max(c.peak_connections);
    }
    Ok(Json(UsageReport {
        connections: app.usage.connections(&tenant),
        tenant,
        period: q.period,
        from,
        to,
        rows: rows
            .into_iter()
            .map(|((start, key), counts)| UsageEntry { start, key, counts })
            .collect(),
        totals,
        storage: StorageUsage {
            messages: storage.0,
            bytes: storage.1,
        },
    }))
}
