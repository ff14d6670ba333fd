//! `switchboard tenants …` and `switchboard keys …`, offline on a data directory and against a
//! running server, run as the built binary.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use switchboard_server::{Config, Server};

/// Runs the binary off the runtime's thread: the server under test shares the runtime.
async fn switchboard(args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args(args)
        .env_remove("SWITCHBOARD_ADMIN_KEY")
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap()
}

async fn ok(args: &[&str]) -> Vec<Value> {
    let out = switchboard(args).await;
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn fails(args: &[&str]) -> String {
    let out = switchboard(args).await;
    assert!(!out.status.success(), "{args:?} should fail");
    String::from_utf8(out.stderr).unwrap()
}

async fn start(dir: &Path) -> Server {
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.data_dir = dir.to_owned();
    Server::start(config).await.unwrap()
}

#[tokio::test]
async fn offline_then_online() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();

    // Offline, before any server ran: the tenant and its key are created in the directory.
    let created = ok(&["tenants", "create", "acme", "--data-dir", data]).await;
    let acme_key = created[0]["key"]["key"].as_str().unwrap().to_owned();
    assert_eq!(created[0]["tenant"]["id"], "acme");
    let admin = ok(&["keys", "create", "--admin", "--data-dir", data]).await;
    let admin_key = admin[0]["key"].as_str().unwrap().to_owned();
    assert!(admin_key.starts_with("ak_"));
    let err = fails(&["keys", "create", "--data-dir", data]).await;
    assert!(err.contains("--tenant"), "{err}");

    // The server keeps what was created offline: with a tenant and an admin key there, it
    // bootstraps neither a `default` tenant nor an admin key.
    let server = start(dir.path()).await;
    assert!(server.bootstrap_key.is_none() && server.admin_key.is_none());
    let url = server.http_url();
    let listed = ok(&["tenants", "list", "--url", &url, "--key", &admin_key]).await;
    let ids: Vec<&str> = listed.iter().map(|t| t["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["acme"]);

    // Offline while the server runs is refused: one process per data directory.
    let err = fails(&["tenants", "list", "--data-dir", data]).await;
    assert!(err.contains("in use"), "{err}");

    // A tenant key manages its own keys over the API.
    let second = ok(&["keys", "create", "--url", &url, "--key", &acme_key]).await;
    let second_id = second[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(second[0]["tenant"], "acme");
    let own = ok(&["keys", "list", "--url", &url, "--key", &acme_key]).await;
    assert_eq!(own.len(), 2);
    let err = fails(&["tenants", "list", "--url", &url, "--key", &acme_key]).await;
    assert!(err.starts_with("error: forbidden:"), "{err}");
    ok(&[
        "keys", "revoke", &second_id, "--url", &url, "--key", &acme_key,
    ])
    .await;

    // The admin revokes the tenant; its key stops working.
    let revoked = ok(&[
        "tenants", "revoke", "acme", "--url", &url, "--key", &admin_key,
    ])
    .await;
    assert!(revoked[0]["revoked_at"].is_i64());
    let err = fails(&["keys", "list", "--url", &url, "--key", &acme_key]).await;
    assert!(err.starts_with("error: invalid_key:"), "{err}");
    let err = fails(&["tenants", "list", "--url", &url]).await;
    assert!(err.contains("SWITCHBOARD_ADMIN_KEY"), "{err}");
    server.shutdown().await;

    // Offline again: the revocations were stored.
    let keys = ok(&["keys", "list", "--tenant", "acme", "--data-dir", data]).await;
    assert_eq!(keys.len(), 2);
    assert!(keys.iter().all(|k| k["revoked_at"].is_i64()));
    let err = fails(&["keys", "create", "--tenant", "acme", "--data-dir", data]).await;
    assert!(err.starts_with("error: forbidden:"), "{err}");
}
