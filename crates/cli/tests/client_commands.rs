//! The client subcommands against a real server on port 0, run as the built binary.

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;
use switchboard_server::{Config, Server};

struct Env {
    server: Server,
    key: String,
    _dir: tempfile::TempDir,
}

async fn start() -> Env {
    start_with(|_| {}).await
}

async fn start_with(configure: impl FnOnce(&mut Config)) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.data_dir = dir.path().to_owned();
    configure(&mut config);
    let server = Server::start(config).await.unwrap();
    let key = server.bootstrap_key.clone().unwrap();
    Env {
        server,
        key,
        _dir: dir,
    }
}

impl Env {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
        cmd.args(args)
            .arg("--url")
            .arg(self.server.ws_url())
            .env("SWITCHBOARD_API_KEY", &self.key)
            .stdin(Stdio::null());
        cmd
    }

    async fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.cmd(args);
        let output = tokio::task::spawn_blocking(move || cmd.output());
        tokio::time::timeout(Duration::from_secs(20), output)
            .await
            .expect("the command finishes")
            .unwrap()
            .unwrap()
    }

    async fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args).await;
        assert!(
            out.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_listen_history_presence() {
    let env = start().await;
    let send = ["send", "--channel", "lobby", "--agent", "alice"];
    let out = env
        .ok(&[&send[..], &[r#"{"text":"hello"}"#]].concat())
        .await;
    assert_eq!(out, "1\n");
    let out = env
        .ok(&[&send[..], &["--type", "dm", "--to", "bob", r#""psst""#]].concat())
        .await;
    assert_eq!(out, "2\n");
    let out = env
        .ok(&[&send[..], &["--ephemeral", "--id", "blip-1", "1"]].concat())
        .await;
    assert_eq!(out, "blip-1\n", "an ephemeral send prints its id");
    let out = env.ok(&[&send[..], &["--id", "fixed", "3"]].concat()).await;
    assert_eq!(out, "3\n");
    let out = env.ok(&[&send[..], &["--id", "fixed", "3"]].concat()).await;
    assert_eq!(
        out, "3\n",
        "a repeated id is acknowledged with the original offset"
    );

    // Replay from the start: the direct message to bob is visible to bob.
    let out = env
        .ok(&[
            "listen",
            "--channel",
            "lobby",
            "--agent",
            "bob",
            "--since",
            "0",
            "--count",
            "3",
        ])
        .await;
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["data"]["text"], "hello");
    assert_eq!(
        (lines[1]["type"].as_str(), lines[1]["to"].as_str()),
        (Some("dm"), Some("bob"))
    );
    assert_eq!(lines[2]["offset"], 3);

    let out = env.ok(&["history", "--channel", "lobby"]).await;
    assert_eq!(json_lines(&out).len(), 3);
    let out = env
        .ok(&[
            "history",
            "--channel",
            "lobby",
            "--limit",
            "1",
            "--backward",
        ])
        .await;
    assert_eq!(json_lines(&out)[0]["offset"], 3);
    let out = env
        .ok(&[
            "history",
            "--channel",
            "lobby",
            "--from",
            "2",
            "--to",
            "2",
            "--type",
            "dm",
            "--sender",
            "alice",
        ])
        .await;
    assert_eq!(json_lines(&out)[0]["offset"], 2);

    // A live listener: it shows up in presence and prints what is sent after it joined.
    let mut listener = env
        .cmd(&[
            "listen",
            "--channel",
            "lobby",
            "--agent",
            "carol",
            "--count",
            "1",
            "--type",
            "chat",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut present = Vec::new();
    for _ in 0..100 {
        present = json_lines(&env.ok(&["presence", "--channel", "lobby"]).await);
        if !present.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(present.len(), 1);
    assert_eq!(present[0]["name"], "carol");
    assert!(present[0]["joined_at"].as_i64().unwrap() > 0);
    env.ok(&[&send[..], &["--type", "other", "0"]].concat())
        .await;
    env.ok(&[&send[..], &["--type", "chat", r#"{"n":5}"#]].concat())
        .await;
    let stdout = listener.stdout.take().unwrap();
    let read = tokio::task::spawn_blocking(move || {
        let line = BufReader::new(stdout).lines().next().unwrap().unwrap();
        (line, listener.wait().unwrap())
    });
    let (line, status) = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("listen prints and exits")
        .unwrap();
    let m: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (m["type"].as_str(), m["data"]["n"].as_i64()),
        (Some("chat"), Some(5))
    );
    assert!(status.success(), "listen exits after --count messages");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_print_their_code_and_exit_1() {
    let env = start().await;
    env.ok(&[
        "send",
        "--channel",
        "safe",
        "--password",
        "pw",
        "--agent",
        "a",
        "1",
    ])
    .await;
    let out = env
        .run(&[
            "send",
            "--channel",
            "safe",
            "--password",
            "nope",
            "--agent",
            "b",
            "1",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: bad_password: "), "{stderr}");

    let out = env.run(&["history", "--channel", "missing"]).await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: channel_not_found: "), "{stderr}");

    let out = env
        .run(&["send", "--channel", "x", "--agent", "a", "not json"])
        .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid JSON"));

    let out = env
        .run(&[
            "send",
            "--channel",
            "x",
            "--agent",
            "a",
            "--key",
            "sk_bad",
            "1",
        ])
        .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: invalid_key: "), "{stderr}");

    // Nothing listens on port 1.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.args([
        "presence",
        "--channel",
        "x",
        "--url",
        "ws://127.0.0.1:1",
        "--key",
        "k",
    ]);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: connection failed"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kv_put_get_list_delete() {
    let env = start().await;
    let at = ["--channel", "board"];
    // The channel must exist: a send creates it.
    env.ok(&["send", "--channel", "board", "--agent", "a", "1"])
        .await;
    let put = json_lines(
        &env.ok(&[&["kv", "put", "config/theme", r#"{"dark":true}"#], &at[..]].concat())
            .await,
    );
    assert_eq!(put[0]["version"], 1);
    let put = json_lines(
        &env.ok(&[
            &["kv", "put", "config/lang", "en", "--version", "0"],
            &at[..],
        ]
        .concat())
            .await,
    );
    assert_eq!(put[0]["value"], "en", "a bare word is a string");
    let conflict = env
        .run(
            &[
                &["kv", "put", "config/lang", "fr", "--version", "5"],
                &at[..],
            ]
            .concat(),
        )
        .await;
    assert!(!conflict.status.success());
    let stderr = String::from_utf8_lossy(&conflict.stderr);
    assert!(stderr.starts_with("error: version_conflict:"), "{stderr}");
    let got = json_lines(
        &env.ok(&[&["kv", "get", "config/theme"], &at[..]].concat())
            .await,
    );
    assert_eq!(got[0]["value"]["dark"], true);
    let listed = json_lines(
        &env.ok(&[&["kv", "list", "--prefix", "config/"], &at[..]].concat())
            .await,
    );
    let keys: Vec<&str> = listed.iter().map(|e| e["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["config/lang", "config/theme"]);
    env.ok(&[&["kv", "delete", "config/lang"], &at[..]].concat())
        .await;
    let missing = env
        .run(&[&["kv", "get", "config/lang"], &at[..]].concat())
        .await;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.starts_with("error: not_found:"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_receive_and_dead_letters() {
    // One delivery only: a message printed without an ack is dead-lettered next time.
    let env = start_with(|c| c.inbox.max_deliveries = 1).await;
    let send = [
        "send",
        "--channel",
        "jobs",
        "--agent",
        "boss",
        "--to",
        "worker",
    ];
    env.ok(&[&send[..], &[r#"{"n":1}"#]].concat()).await;
    env.ok(&[&send[..], &[r#"{"n":2}"#]].concat()).await;
    let at = ["--channel", "jobs", "--agent", "worker"];
    let got = json_lines(
        &env.ok(&[&["inbox", "receive", "--count", "2"], &at[..]].concat())
            .await,
    );
    assert_eq!(got.len(), 2);
    assert_eq!(got[0]["delivery_count"], 1);
    assert_eq!(got[0]["message"]["data"]["n"], 1);
    assert_eq!(got[1]["message"]["data"]["n"], 2);

    env.ok(&[&send[..], &["--id", "third", r#"{"n":3}"#]].concat())
        .await;
    let got = json_lines(
        &env.ok(&[&["inbox", "receive", "--count", "1", "--no-ack"], &at[..]].concat())
            .await,
    );
    // The acknowledged two are gone; the third was printed but not acknowledged.
    assert_eq!(got[0]["message"]["id"], "third");
    let dead = json_lines(
        &env.ok(&["inbox", "dead-letters", "--channel", "jobs"])
            .await,
    );
    assert!(dead.is_empty(), "{dead:?}");
    // Released when the consumer left; delivered once already, so it is dead-lettered on
    // the next lease instead of delivered.
    let mut consumer = env.cmd(&[&["inbox", "receive", "--count", "1"], &at[..]].concat());
    consumer.stdout(Stdio::piped());
    let mut child = consumer.spawn().unwrap();
    let dead = loop {
        let dead = json_lines(
            &env.ok(&[
                "inbox",
                "dead-letters",
                "--channel",
                "jobs",
                "--recipient",
                "worker",
            ])
            .await,
        );
        if !dead.is_empty() {
            break dead;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.kill().unwrap();
    let _ = child.wait();
    assert_eq!(dead[0]["message"]["id"], "third");
    assert_eq!(dead[0]["reason"], "max_deliveries");
    assert_eq!(dead[0]["recipient"], "worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_announce_discover_get_remove() {
    let env = start().await;
    let card = json_lines(
        &env.ok(&[
            "agents",
            "announce",
            "scribe",
            "--capability",
            "summarize",
            "--capability",
            "translate",
            "--metadata",
            r#"{"price":3,"status":"idle"}"#,
        ])
        .await,
    );
    assert_eq!(card[0]["name"], "scribe");
    assert_eq!(card[0]["online"], false);
    env.ok(&["agents", "announce", "painter", "--capability", "draw"])
        .await;
    let found = json_lines(
        &env.ok(&[
            "agents",
            "discover",
            "--capability",
            "summarize",
            "--filters",
            r#"{"price":{"max":5}}"#,
        ])
        .await,
    );
    assert_eq!(found.len(), 1);
    assert_eq!(found[0]["name"], "scribe");
    let all = json_lines(&env.ok(&["agents", "discover", "--online", "false"]).await);
    let names: Vec<&str> = all.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["painter", "scribe"]);
    let got = json_lines(&env.ok(&["agents", "get", "painter"]).await);
    assert_eq!(got[0]["capabilities"][0], "draw");
    env.ok(&["agents", "remove", "painter"]).await;
    let gone = env.run(&["agents", "get", "painter"]).await;
    assert!(!gone.status.success());
    assert!(String::from_utf8_lossy(&gone.stderr).starts_with("error: not_found:"));
    let bad = env
        .run(&["agents", "discover", "--filters", "not json"])
        .await;
    assert!(!bad.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_create_list_deliveries_delete() {
    let env = start().await;
    // A receiver that answers 204 to everything.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let mut seen = Vec::new();
                // Read the head and the body (Content-Length), then answer.
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&seen).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let length: usize = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length: ")
                                    .map(|v| v.trim().parse().unwrap())
                            })
                            .unwrap_or(0);
                        if body.len() >= length {
                            let _ = socket
                                .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                                .await;
                            return;
                        }
                    }
                }
            });
        }
    });
    let created = json_lines(
        &env.ok(&[
            "webhooks",
            "create",
            &url,
            "--event",
            "message.published",
            "--channel",
            "orders-*",
        ])
        .await,
    );
    let id = created[0]["id"].as_str().unwrap().to_owned();
    assert!(created[0]["secret"].as_str().unwrap().starts_with("whsec_"));
    let listed = json_lines(&env.ok(&["webhooks", "list"]).await);
    assert_eq!(listed[0]["id"], id.as_str());
    assert!(
        listed[0].get("secret").is_none(),
        "the secret is shown once"
    );
    env.ok(&["send", "--channel", "orders-1", "--agent", "a", "1"])
        .await;
    let attempts = loop {
        let attempts = json_lines(&env.ok(&["webhooks", "deliveries", &id]).await);
        if !attempts.is_empty() {
            break attempts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(attempts[0]["status"], 204);
    assert_eq!(attempts[0]["event"], "message.published");
    let bad = env
        .run(&["webhooks", "create", &url, "--event", "nope"])
        .await;
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("unknown event"));
    env.ok(&["webhooks", "delete", &id]).await;
    assert!(json_lines(&env.ok(&["webhooks", "list"]).await).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channels_create_team_get_complete_delete() {
    let env = start().await;
    let created = json_lines(
        &env.ok(&[
            "channels",
            "create",
            "huddle",
            "--member",
            "alice",
            "--member",
            "bob",
            "--expires-in",
            "3600",
        ])
        .await,
    );
    assert_eq!(created[0]["members"], serde_json::json!(["alice", "bob"]));
    assert!(created[0]["expires_at"].as_i64().unwrap() > 0);
    // Only members join.
    let refused = env
        .run(&["send", "--channel", "huddle", "--agent", "mallory", "1"])
        .await;
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).starts_with("error: not_a_member:"));
    env.ok(&["send", "--channel", "huddle", "--agent", "alice", "1"])
        .await;
    let got = json_lines(&env.ok(&["channels", "get", "huddle"]).await);
    assert_eq!(got[0]["head"], 1);
    env.ok(&["channels", "complete", "huddle"]).await;
    let gone = env.run(&["channels", "get", "huddle"]).await;
    assert!(String::from_utf8_lossy(&gone.stderr).starts_with("error: channel_not_found:"));

    env.ok(&["channels", "create", "plain", "--ephemeral"])
        .await;
    let not_team = env.run(&["channels", "complete", "plain"]).await;
    assert!(String::from_utf8_lossy(&not_team.stderr).starts_with("error: invalid_payload:"));
    env.ok(&["channels", "delete", "plain"]).await;
    let bad = env
        .run(&["channels", "create", "x", "--expires-in", "5"])
        .await;
    assert!(!bad.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_each_storage_tier() {
    let env = start_with(|c| c.storage.cache_messages = 2).await;
    let created = json_lines(
        &env.ok(&[
            "channels",
            "create",
            "tiered",
            "--storage",
            "log",
            "--cache-messages",
            "3",
        ])
        .await,
    );
    assert_eq!(created[0]["storage"], "log");
    assert_eq!(created[0]["retention"]["cache"]["max_messages"], 3);
    for n in 1..=5 {
        env.ok(&[
            "send",
            "--channel",
            "tiered",
            "--agent",
            "alice",
            &n.to_string(),
        ])
        .await;
    }
    let read = |source: &'static str| {
        let env = &env;
        async move {
            let out = env
                .run(&["history", "--channel", "tiered", "--source", source])
                .await;
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let offsets: Vec<u64> = json_lines(&String::from_utf8(out.stdout).unwrap())
                .iter()
                .map(|m| m["offset"].as_u64().unwrap())
                .collect();
            (offsets, String::from_utf8(out.stderr).unwrap())
        }
    };
    let (offsets, note) = read("cache").await;
    assert_eq!(offsets, vec![3, 4, 5]);
    assert!(note.contains("served by CACHE 3-5"), "{note}");
    let (offsets, note) = read("kafka").await;
    assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
    assert!(note.contains("served by LOG 1-5"), "{note}");
    let (offsets, note) = read("auto").await;
    assert_eq!(offsets, vec![1, 2, 3, 4, 5]);
    assert!(note.contains("served by LOG 1-2, CACHE 3-5"), "{note}");
    // The channel keeps no database tier.
    let out = env
        .run(&["history", "--channel", "tiered", "--source", "database"])
        .await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: no_history:"));
}
