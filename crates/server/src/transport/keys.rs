//! `/v1/tenants` (admin keys) and `/v1/keys` (admin keys, and tenant keys for their own
//! tenant): create, list and revoke. Revoking closes the sockets using the key at once.

use super::http::{Body, bearer};
use crate::App;
use crate::auth::Caller;
use crate::error::{Error, Result, err};
use axum::extract::{FromRequestParts, Path, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use std::sync::Arc;
use switchboard_protocol::{
    CreateKey, CreateTemporaryKey, CreateTenant, CreatedKey, CreatedTenant,
};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/v1/tenants", get(list_tenants).post(create_tenant))
        .route("/v1/tenants/{id}", delete(revoke_tenant))
        .route("/v1/keys", get(list_keys).post(create_key))
        .route("/v1/keys/temporary", post(mint_temporary))
        .route("/v1/keys/{id}", delete(revoke_key))
}

/// The verified holder of the bearer key: an admin key or an original key (temporary keys
/// manage nothing).
struct AnyKey(Caller);

impl FromRequestParts<Arc<App>> for AnyKey {
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self> {
        let caller = app.keys.verify_any(bearer(parts)?)?;
        if let Caller::Tenant(p) = &caller {
            p.original_only("managing keys")?;
        }
        Ok(AnyKey(caller))
    }
}

async fn mint_temporary(
    State(app): State<Arc<App>>,
    AnyKey(caller): AnyKey,
    Body(body): Body<CreateTemporaryKey>,
) -> Result<impl IntoResponse> {
    let Caller::Tenant(minter) = caller else {
        return Err(err!(
            Forbidden,
            "temporary keys are minted with a tenant's original key, not an admin key"
        ));
    };
    let max_ttl = app.config.limits.max_temporary_key_ttl_secs;
    let key = app.keys.mint(&minter, body, max_ttl).await?;
    Ok((StatusCode::CREATED, Json(key)))
}

fn admin_only(caller: &Caller) -> Result<()> {
    match caller {
        Caller::Admin { .. } => Ok(()),
        Caller::Tenant(_) => Err(err!(
            Forbidden,
            "tenants are managed with an admin key (admin.key in the data directory)"
        )),
    }
}

async fn create_tenant(
    State(app): State<Arc<App>>,
    AnyKey(caller): AnyKey,
    Body(body): Body<CreateTenant>,
) -> Result<impl IntoResponse> {
    admin_only(&caller)?;
    app.keys.create_tenant(&body.id).await?;
    let key = app.keys.create_key(&body.id).await?;
    let tenant = app.keys.tenant_info(&body.id).expect("just created");
    let created = CreatedTenant {
        tenant,
        key: CreatedKey {
            key: key.key,
            info: key.info,
        },
    };
    Ok((StatusCode::CREATED, Json(created)))
}

async fn list_tenants(
    State(app): State<Arc<App>>,
    AnyKey(caller): AnyKey,
) -> Result<impl IntoResponse> {
    admin_only(&caller)?;
    Ok(Json(serde_json::json!({ "tenants": app.keys.tenants() })))
}

async fn revoke_tenant(
    State(app): State<Arc<App>>,
    AnyKey(caller): AnyKey,
    Path(id): Path<String>,
) -> Result<impl IntoResponse> {
    admin_only(&caller)?;
    Ok(Json(app.revoke_tenant(&id).await?))
}

async fn create_key(
    State(app): State<Arc<App>>,
    AnyKey(caller): AnyKey,
    body: Bytes,
) -> Result<impl IntoResponse> {
    // `{}` or no body at all: a tenant key asks for another key of its own tenant.
    let request: CreateKey = if body.iter().all(u8::is_ascii_whitespace) {
        CreateKey::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| err!(InvalidPayload, "request body: {e}"))?
    };
    let key = match (&caller, request) {
        (
            Caller::Admin { .. },
            CreateKey {
                admin: true,
                tenant: None,
            },
        ) => app.keys.create_admin_key().await?,
        (
            Caller::Admin { .. },
            CreateKey {
                admin: false,
                tenant: Some(tenant),
            },
        ) => app.keys.create_key(&tenant).await?,
        (Caller::Admin { .. }, _) => {
            return Err(err!(
                InvalidPayload,
                "send {{\"tenant\": \"<id>\"}} for a tenant key or {{\"admin\": true}} for an admin key"
            ));
        }
        (
            Caller::Tenant(p),
            CreateKey {
                admin: false,
                tenant,
            },
        ) => {
            if tenant.is_some_and(|t| *t != *p.tenant_id) {
                return Err(err!(
                    Forbidden,
                    "a tenant key creates keys of its own tenant only"
                ));
            }
            app.keys.create_key(&p.tenant_id).await?
        }
        (Caller::Tenant(_), CreateKey { admin: true, .. }) => {
            return Err(err!(Forbidden, "admin keys are created with an admin key"));
        }
    };
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: key.key,
            info: key.info,
        }),
    ))
}

#[derive(Deserialize)]
struct KeysQuery {
    tenant: Option<String>,
}

async fn list_keys(
    State(app): State<Arc<App>>,
    AnyKey(caller): AnyKey,
    super::http::Params(query): super::http::Params<KeysQuery>,
) -> Result<impl IntoResponse> {
    let keys = match &caller {
        Caller::Admin { .. } => app.keys.keys(query.tenant.as_deref()),
        Caller::Tenant(p) => {
            if query.tenant.is_some_and(|t| *t != *p.tenant_id) {
                return Err(err!(
                    Forbidden,
                    "a tenant key lists keys of its own tenant only"
                ));
            }
            app.keys.keys(Some(&p.tenant_id))
        }
    };
    Ok(Json(serde_json::json!({ "keys": keys })))
}

async fn revoke_key(
    State(app): State<Arc<App>>,
    AnyKey(caller): AnyKey,
    Path(id): Path<String>,
) -> Result<impl IntoResponse> {
    let not_found = || err!(NotFound, "no key with id {id:?}");
    let key = app.keys.key(&id).ok_or_else(not_found)?;
    if let Caller::Tenant(p) = &caller
        && key.tenant.as_deref() != Some(&*p.tenant_id)
    {
        // Another tenant's key ids are not even confirmed to exist.
        return Err(not_found());
    }
    Ok(Json(app.revoke_key(&id).await?))
}
