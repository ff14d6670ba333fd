//! Tenants, original keys and admin keys over `/v1/tenants` and `/v1/keys`, and what revoking
//! does to live connections.

use crate::harness::*;
use serde_json::{Value, json};

async fn as_key(
    s: &TestServer,
    key: &str,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    http_request(&s.http_url(), method, path, Some(key), body).await
}

#[tokio::test]
async fn admins_create_list_and_revoke_tenants() {
    let s = TestServer::start().await;
    let (status, body) = as_key(&s, &s.admin_key, "GET", "/v1/tenants", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["tenants"][0]["id"], "default");
    assert_eq!(body["tenants"][0]["live_keys"], 1);

    let (status, created) = as_key(
        &s,
        &s.admin_key,
        "POST",
        "/v1/tenants",
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["tenant"]["id"], "acme");
    let acme = created["key"]["key"].as_str().unwrap().to_owned();
    assert!(acme.starts_with(&format!("sk_{}_", created["key"]["id"].as_str().unwrap())));
    assert_eq!(created["key"]["kind"], "original");

    // The new tenant's key works, in its own namespace.
    let (status, _) = as_key(
        &s,
        &acme,
        "POST",
        "/v1/channels",
        Some(json!({"name": "room"})),
    )
    .await;
    assert_eq!(status, 201);

    let (status, err) = as_key(
        &s,
        &s.admin_key,
        "POST",
        "/v1/tenants",
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!((status, code(&err)), (409, "tenant_exists"));
    let (status, err) = as_key(
        &s,
        &s.admin_key,
        "POST",
        "/v1/tenants",
        Some(json!({"id": "a b"})),
    )
    .await;
    assert_eq!((status, code(&err)), (400, "invalid_payload"));

    // Tenant keys cannot manage tenants; admin keys cannot use channels or sockets.
    let (status, err) = as_key(&s, &acme, "GET", "/v1/tenants", None).await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let (status, err) = as_key(&s, &s.admin_key, "GET", "/v1/channels/room", None).await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let mut admin_socket = s.raw_with_key(&s.admin_key).await;
    let error = admin_socket.event("error").await;
    assert_eq!(error.payload["code"], "forbidden");
    assert_eq!(admin_socket.closed_with().await, 4500);

    // Revoking the tenant refuses its keys and closes its sockets.
    let mut live = s.raw_with_key(&acme).await;
    live.join("room", agent("a")).await.unwrap();
    let (status, revoked) = as_key(&s, &s.admin_key, "DELETE", "/v1/tenants/acme", None).await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_i64());
    assert_eq!(revoked["live_keys"], 0);
    assert_eq!(live.event("error").await.payload["code"], "key_revoked");
    assert_eq!(live.closed_with().await, 4503);
    let (status, err) = as_key(&s, &acme, "GET", "/v1/channels/room", None).await;
    assert_eq!((status, code(&err)), (401, "invalid_key"));
    let (status, err) = as_key(
        &s,
        &s.admin_key,
        "POST",
        "/v1/keys",
        Some(json!({"tenant": "acme"})),
    )
    .await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let (status, err) = as_key(&s, &s.admin_key, "DELETE", "/v1/tenants/nobody", None).await;
    assert_eq!((status, code(&err)), (404, "not_found"));

    // The default tenant never noticed.
    let (status, _) = s.http("GET", "/v1/channels/room", None).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn revoking_a_key_closes_its_sockets_and_spares_the_others() {
    let s = TestServer::start().await;
    let (status, second) = s.http("POST", "/v1/keys", None).await;
    assert_eq!(status, 201, "{second}");
    let second_key = second["key"].as_str().unwrap().to_owned();
    let second_id = second["id"].as_str().unwrap().to_owned();
    assert_eq!(second["tenant"], "default");

    let (_, listed) = s.http("GET", "/v1/keys", None).await;
    let ids: Vec<&str> = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&second_id.as_str()));
    assert!(
        listed.to_string().find("sk_").is_none(),
        "secrets are never listed"
    );

    let mut doomed = s.raw_with_key(&second_key).await;
    doomed.join("lobby", agent("doomed")).await.unwrap();
    // A connection that authenticated late, with the `auth` event, is registered too.
    let mut late = s.raw_unauthenticated().await;
    let r = late
        .request("phoenix", "auth", json!({"api_key": second_key}))
        .await;
    assert!(r.is_ok(), "{r:?}");
    let mut spared = s.raw().await;
    spared.join("lobby", agent("spared")).await.unwrap();

    let (status, revoked) = s
        .http("DELETE", &format!("/v1/keys/{second_id}"), None)
        .await;
    assert_eq!(status, 200);
    assert!(revoked["revoked_at"].is_i64());
    for socket in [&mut doomed, &mut late] {
        assert_eq!(socket.event("error").await.payload["code"], "key_revoked");
        assert_eq!(socket.closed_with().await, 4503);
    }
    spared
        .publish("lobby", json!({"type": "t", "data": 1}))
        .await
        .unwrap();

    // The revoked key is refused everywhere, also after a restart.
    let mut s = s;
    s.restart().await;
    let (status, err) =
        http_request(&s.http_url(), "GET", "/v1/keys", Some(&second_key), None).await;
    assert_eq!((status, code(&err)), (401, "invalid_key"));
    let mut refused = s.raw_with_key(&second_key).await;
    assert_eq!(refused.event("error").await.payload["code"], "invalid_key");
    assert_eq!(refused.closed_with().await, 4500);
    let (_, listed) = s.http("GET", "/v1/keys", None).await;
    let revoked = listed["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["id"] == second_id.as_str())
        .unwrap()
        .clone();
    assert!(revoked["revoked_at"].is_i64());
}

#[tokio::test]
async fn tenants_cannot_reach_each_others_keys() {
    let s = TestServer::start().await;
    let acme = s.server().create_key("acme").await.unwrap();
    let (_, acme_keys) = as_key(&s, &acme, "GET", "/v1/keys", None).await;
    let acme_id = acme_keys["keys"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(acme_keys["keys"].as_array().unwrap().len(), 1);

    // The default tenant can neither revoke nor list acme's keys, nor learn that they exist.
    let (status, err) = s.http("DELETE", &format!("/v1/keys/{acme_id}"), None).await;
    assert_eq!((status, code(&err)), (404, "not_found"));
    let (status, err) = s.http("DELETE", "/v1/keys/000000000000", None).await;
    assert_eq!((status, code(&err)), (404, "not_found"));
    let (status, err) = s.http("GET", "/v1/keys?tenant=acme", None).await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let (status, err) = s
        .http("POST", "/v1/keys", Some(json!({"tenant": "acme"})))
        .await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let (status, err) = s
        .http("POST", "/v1/keys", Some(json!({"admin": true})))
        .await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let (status, _) = as_key(&s, &acme, "GET", "/v1/keys", None).await;
    assert_eq!(status, 200);

    // An admin sees and revokes any key, and mints admin keys.
    let (_, all) = as_key(&s, &s.admin_key, "GET", "/v1/keys", None).await;
    let kinds: Vec<&str> = all["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.iter().filter(|k| **k == "admin").count(), 1);
    assert_eq!(kinds.len(), 3);
    let (status, admin2) = as_key(
        &s,
        &s.admin_key,
        "POST",
        "/v1/keys",
        Some(json!({"admin": true})),
    )
    .await;
    assert_eq!(status, 201);
    assert!(admin2["key"].as_str().unwrap().starts_with("ak_"));
    let (status, _) = as_key(
        &s,
        &s.admin_key,
        "DELETE",
        &format!("/v1/keys/{acme_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _) = as_key(&s, &acme, "GET", "/v1/keys", None).await;
    assert_eq!(status, 401);
    let (status, err) = as_key(&s, &s.admin_key, "POST", "/v1/keys", Some(json!({}))).await;
    assert_eq!((status, code(&err)), (400, "invalid_payload"));
}
