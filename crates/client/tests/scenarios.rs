//! The shared scenario suite (`spec/scenarios/*.json`, format in its README) run with the Rust
//! SDK against an in-process server: one fresh server per scenario, every client behind its
//! own TCP proxy so a step can cut its connection.

use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_client::{
    Backoff, ChannelEvent, ChannelSender, Client, ClientConfig, CreateChannel, Error, ErrorCode,
    ErrorReply, HistoryQuery, HttpClient, JoinParams, KvList, Message, Publish, Scope,
};
use switchboard_server::{Config, Server};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

/// The longest a step waits for what it expects.
const WAIT: Duration = Duration::from_secs(10);

fn scenario_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../spec/scenarios")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_passes() {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(scenario_dir())
        .expect("spec/scenarios exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    assert!(paths.len() >= 10, "the scenario suite is missing");
    let runs = paths.into_iter().map(|path| {
        tokio::spawn(async move {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let scenario: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(scenario["name"], json!(name), "file name and `name` differ");
            (name, Runner::run(scenario).await)
        })
    });
    let mut failures = Vec::new();
    for run in runs.collect::<Vec<_>>() {
        let (name, outcome) = run.await.expect("scenario task");
        if let Err(why) = outcome {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "failed:\n{}", failures.join("\n"));
}

/// The scenario matching rule: objects by the keys they give, `null` = absent or null, arrays
/// by length and element, scalars by equality.
fn matches(expected: &Value, actual: Option<&Value>) -> bool {
    match (expected, actual) {
        (Value::Null, None | Some(Value::Null)) => true,
        (Value::Object(want), Some(Value::Object(got))) => {
            want.iter().all(|(k, v)| matches(v, got.get(k)))
        }
        (Value::Array(want), Some(Value::Array(got))) => {
            want.len() == got.len() && want.iter().zip(got).all(|(w, g)| matches(w, Some(g)))
        }
        (want, Some(got)) => want == got,
        _ => false,
    }
}

#[test]
fn matching_rule() {
    let m = |e: Value, a: Value| matches(&e, Some(&a));
    assert!(m(json!({"a": 1}), json!({"a": 1, "b": 2})));
    assert!(!m(json!({"a": 1}), json!({"a": 2})));
    assert!(m(json!({"a": null}), json!({})));
    assert!(!m(json!({"a": null}), json!({"a": 0})));
    assert!(m(json!([{"x": 1}]), json!([{"x": 1, "y": 2}])));
    assert!(!m(json!([{"x": 1}]), json!([{"x": 1}, {"x": 2}])));
    assert!(!m(json!(1), json!(true)));
}

fn to_value(value: &impl serde::Serialize) -> Value {
    serde_json::to_value(value).expect("serializes")
}

fn parse<T: serde::de::DeserializeOwned>(value: &Value, what: &str) -> Result<T, String> {
    serde_json::from_value(value.clone()).map_err(|e| format!("{what}: {e}"))
}

fn expect(step: &Value, actual: Value) -> Result<(), String> {
    match step.get("expect") {
        Some(want) if !matches(want, Some(&actual)) => {
            Err(format!("expected {want}, got {actual}"))
        }
        _ => Ok(()),
    }
}

/// What the runner has read from one joined channel.
#[derive(Default)]
struct Seen {
    messages: std::collections::VecDeque<Message>,
    /// Agent name → the `phx_ref`s of its sessions.
    presence: BTreeMap<String, BTreeSet<String>>,
    reconnects: usize,
    kicked: Option<String>,
    ended: bool,
}

struct ChannelSlot {
    sender: ChannelSender,
    seen: Arc<Mutex<Seen>>,
    changed: watch::Receiver<u64>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
    reconnects_taken: usize,
}

impl ChannelSlot {
    /// Reads the channel's events into `seen` until it ends or the runner leaves it.
    fn start(mut channel: switchboard_client::Channel) -> Self {
        let seen: Arc<Mutex<Seen>> = Arc::default();
        let (tick, changed) = watch::channel(0u64);
        let (leave, mut leave_rx) = oneshot::channel::<oneshot::Sender<()>>();
        let sender = channel.sender();
        let shared = seen.clone();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = channel.recv() => event,
                    done = &mut leave_rx => {
                        let _ = channel.leave().await;
                        if let Ok(done) = done {
                            let _ = done.send(());
                        }
                        break;
                    }
                };
                {
                    let mut s = shared.lock().unwrap();
                    match event {
                        None => {
                            s.ended = true;
                        }
                        Some(ChannelEvent::Message(m)) => s.messages.push_back(m),
                        Some(ChannelEvent::PresenceState(state)) => {
                            s.presence = state
                                .into_iter()
                                .map(|(name, e)| {
                                    (name, e.metas.into_iter().map(|m| m.phx_ref).collect())
                                })
                                .collect();
                        }
                        Some(ChannelEvent::PresenceDiff(diff)) => {
                            for (name, e) in diff.joins {
                                let refs = s.presence.entry(name).or_default();
                                refs.extend(e.metas.into_iter().map(|m| m.phx_ref));
                            }
                            for (name, e) in diff.leaves {
                                if let Some(refs) = s.presence.get_mut(&name) {
                                    for m in e.metas {
                                        refs.remove(&m.phx_ref);
                                    }
                                    if refs.is_empty() {
                                        s.presence.remove(&name);
                                    }
                                }
                            }
                        }
                        Some(ChannelEvent::Reconnected) => s.reconnects += 1,
                        Some(ChannelEvent::Kicked(reply)) => {
                            s.kicked = Some(reply.code.as_str().to_owned())
                        }
                        Some(_) => {}
                    }
                }
                tick.send_modify(|n| *n += 1);
                if seen_ended(&shared) {
                    break;
                }
            }
        });
        ChannelSlot {
            sender,
            seen,
            changed,
            leave: Some(leave),
            reconnects_taken: 0,
        }
    }

    /// Waits until `ready` holds for what was seen, then runs `take` on it.
    async fn wait<T>(
        &mut self,
        what: &str,
        mut ready: impl FnMut(&mut Seen) -> Option<T>,
    ) -> Result<T, String> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            self.changed.borrow_and_update();
            if let Some(value) = ready(&mut self.seen.lock().unwrap()) {
                return Ok(value);
            }
            match tokio::time::timeout_at(deadline, self.changed.changed()).await {
                Err(_) => return Err(format!("timed out waiting for {what}")),
                Ok(Err(_)) => {
                    // The pump ended: one last look.
                    return ready(&mut self.seen.lock().unwrap())
                        .ok_or_else(|| format!("the channel ended before {what}"));
                }
                Ok(Ok(())) => {}
            }
        }
    }
}

fn seen_ended(seen: &Mutex<Seen>) -> bool {
    seen.lock().unwrap().ended
}

/// A TCP proxy in front of the server: `block` cuts every connection and refuses new ones
/// until `unblock`.
struct Proxy {
    addr: SocketAddr,
    blocked: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    async fn start(target: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let blocked: Arc<AtomicBool> = Arc::default();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (is_blocked, registry) = (blocked.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if is_blocked.load(Ordering::SeqCst) {
                    continue; // dropped: the client sees a reset and retries later
                }
                registry.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Proxy {
            addr,
            blocked,
            links,
            accept,
        }
    }

    fn block(&self) {
        self.blocked.store(true, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn unblock(&self) {
        self.blocked.store(false, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.block();
    }
}

struct ClientSlot {
    proxy: Proxy,
    client: Client,
    channels: HashMap<String, ChannelSlot>,
}

struct Runner {
    config: Config,
    server: Option<Server>,
    key: String,
    clients: HashMap<String, ClientSlot>,
    _dir: tempfile::TempDir,
}

impl Runner {
    async fn run(scenario: Value) -> Result<(), String> {
        let dir = tempfile::tempdir().unwrap();
        let mut env = Vec::new();
        if let Some(sections) = scenario["server"].as_object() {
            for (section, values) in sections {
                for (key, value) in values.as_object().into_iter().flatten() {
                    let text = match value {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    let name = format!(
                        "SWITCHBOARD_{}_{}",
                        section.to_uppercase(),
                        key.to_uppercase()
                    );
                    env.push((name, text));
                }
            }
        }
        let mut config = Config::load(None, env).map_err(|e| e.to_string())?;
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.data_dir = dir.path().to_owned();
        config.server.shutdown_grace_ms = 2_000;
        let server = Server::start(config.clone())
            .await
            .map_err(|e| e.to_string())?;
        config.server.listen = server.local_addr;
        let key = server
            .bootstrap_key
            .clone()
            .expect("first start makes a key");
        let mut runner = Runner {
            config,
            server: Some(server),
            key,
            clients: HashMap::new(),
            _dir: dir,
        };
        let steps = scenario["steps"].as_array().ok_or("no steps")?.clone();
        let mut outcome = Ok(());
        for (index, step) in steps.iter().enumerate() {
            if let Err(why) = runner.step(step).await {
                outcome = Err(format!("step {index} {step}: {why}"));
                break;
            }
        }
        for (_, slot) in runner.clients.drain() {
            slot.client.close().await;
        }
        if let Some(server) = runner.server.take() {
            server.shutdown().await;
        }
        outcome
    }

    async fn step(&mut self, step: &Value) -> Result<(), String> {
        let result = self.act(step).await;
        match (step.get("error").and_then(Value::as_str), result) {
            (None, Ok(())) => Ok(()),
            (None, Err(Failure::Sdk(e))) => Err(format!("unexpected error: {e}")),
            (None | Some(_), Err(Failure::Runner(why))) => Err(why),
            (Some(code), Err(Failure::Sdk(e))) => match e.code() {
                Some(c) if c.as_str() == code => Ok(()),
                _ => Err(format!("expected error {code}, got {e}")),
            },
            (Some(code), Ok(())) => Err(format!("expected error {code}, but the step succeeded")),
        }
    }

    fn http(&self) -> HttpClient {
        HttpClient::new(&self.server.as_ref().unwrap().ws_url(), &self.key).unwrap()
    }

    fn client(&mut self, step: &Value) -> Result<&mut ClientSlot, Failure> {
        let name = step["client"].as_str().unwrap_or_default();
        self.clients
            .get_mut(name)
            .ok_or_else(|| Failure::Runner(format!("no client `{name}`")))
    }

    fn channel(&mut self, step: &Value) -> Result<&mut ChannelSlot, Failure> {
        let name = step["channel"].as_str().unwrap_or_default().to_owned();
        self.client(step)?
            .channels
            .get_mut(&name)
            .ok_or_else(|| Failure::Runner(format!("no joined channel `{name}`")))
    }

    async fn act(&mut self, step: &Value) -> Result<(), Failure> {
        let op = step["op"].as_str().unwrap_or_default();
        match op {
            "connect" => {
                let proxy = Proxy::start(self.server.as_ref().unwrap().local_addr).await;
                let key = step["api_key"].as_str().unwrap_or(&self.key);
                let config =
                    ClientConfig::new(format!("ws://{}", proxy.addr), key).with_backoff(Backoff {
                        initial: Duration::from_millis(20),
                        max: Duration::from_millis(200),
                        multiplier: 2.0,
                    });
                let client = Client::connect(config).await?;
                if step.get("error").is_some() {
                    // This SDK reports a refused key at the first request.
                    client.join("probe", JoinParams::new("probe")).await?;
                }
                let name = step["client"].as_str().unwrap_or_default().to_owned();
                let slot = ClientSlot {
                    proxy,
                    client,
                    channels: HashMap::new(),
                };
                self.clients.insert(name, slot);
            }
            "join" => {
                let params: JoinParams = parse(&step["params"], "params")?;
                let name = step["channel"].as_str().unwrap_or_default().to_owned();
                let slot = self.client(step)?;
                let channel = slot.client.join(&name, params).await?;
                let reply = to_value(&channel.join_reply());
                slot.channels.insert(name, ChannelSlot::start(channel));
                expect(step, reply)?;
            }
            "leave" => {
                let slot = self.channel(step)?;
                let (done, wait) = oneshot::channel();
                if let Some(leave) = slot.leave.take() {
                    let _ = leave.send(done);
                    let _ = wait.await;
                }
            }
            "publish" => {
                let publish: Publish = parse(&step["message"], "message")?;
                let ack = self.channel(step)?.sender.publish(publish).await?;
                expect(step, to_value(&ack))?;
            }
            "expect_message" => {
                let slot = self.channel(step)?;
                let message = slot.wait("a message", |s| s.messages.pop_front()).await?;
                let actual = to_value(&message);
                if !matches(&step["message"], Some(&actual)) {
                    return Err(Failure::Runner(format!(
                        "expected message {}, got {actual}",
                        step["message"]
                    )));
                }
            }
            "history" => {
                let query: HistoryQuery = match parse(&step["query"], "query") {
                    Ok(query) => query,
                    // A typed SDK cannot even build a query the protocol does not allow (an
                    // unknown poll_source): that is its local invalid_payload.
                    Err(why) if step["error"] == "invalid_payload" => {
                        return Err(Failure::Sdk(Error::Server(ErrorReply::new(
                            ErrorCode::InvalidPayload,
                            why,
                        ))));
                    }
                    Err(why) => return Err(why.into()),
                };
                let page = self.channel(step)?.sender.history(query).await?;
                expect(step, to_value(&page))?;
            }
            "kv_put" => {
                let p = &step["params"];
                let key = kv_key(step)?;
                let (version, ttl) = (p["version"].as_u64(), p["ttl_secs"].as_u64());
                let sender = &self.channel(step)?.sender;
                let entry = sender.kv_put(&key, &p["value"], version, ttl).await?;
                expect(step, to_value(&entry))?;
            }
            "kv_get" => {
                let key = kv_key(step)?;
                let entry = self.channel(step)?.sender.kv_get(&key).await?;
                expect(step, to_value(&entry))?;
            }
            "kv_delete" => {
                let p = &step["params"];
                let key = kv_key(step)?;
                let version = p["version"].as_u64();
                self.channel(step)?.sender.kv_delete(&key, version).await?;
            }
            "kv_list" => {
                let query: KvList = parse(&step["query"], "query")?;
                let page = self.channel(step)?.sender.kv_list(&query).await?;
                expect(step, to_value(&page))?;
            }
            "presence" => {
                let state = self.channel(step)?.sender.presence().await?;
                let names: Vec<&String> = state.keys().collect();
                let want = &step["expect"];
                if let Some(agents) = want.get("agents")
                    && to_value(&names) != *agents
                {
                    return Err(Failure::Runner(format!(
                        "expected agents {agents}, got {names:?}"
                    )));
                }
                for (name, meta) in want["meta"].as_object().into_iter().flatten() {
                    let actual = state.get(name).and_then(|e| e.metas.first());
                    let actual = actual.map(|m| Value::Object(m.meta.clone()));
                    if !matches(meta, actual.as_ref()) {
                        return Err(Failure::Runner(format!(
                            "meta of {name}: expected {meta}, got {actual:?}"
                        )));
                    }
                }
            }
            "await_presence" => {
                let want: Vec<String> = parse(&step["agents"], "agents")?;
                self.channel(step)?
                    .wait(&format!("presence {want:?}"), |s| {
                        s.presence.keys().eq(want.iter()).then_some(())
                    })
                    .await?;
            }
            "drop_connection" => self.client(step)?.proxy.block(),
            "restore_connection" => self.client(step)?.proxy.unblock(),
            "expect_reconnected" => {
                let slot = self.channel(step)?;
                let taken = slot.reconnects_taken;
                slot.wait("a reconnect", |s| (s.reconnects > taken).then_some(()))
                    .await?;
                slot.reconnects_taken += 1;
            }
            "restart_server" => {
                self.server.take().unwrap().shutdown().await;
                let server = Server::start(self.config.clone())
                    .await
                    .map_err(|e| Failure::Runner(e.to_string()))?;
                self.server = Some(server);
            }
            "expect_kicked" => {
                let code = step["code"].as_str().unwrap_or_default().to_owned();
                let kicked = self
                    .channel(step)?
                    .wait("a kick", |s| s.ended.then(|| s.kicked.clone()))
                    .await?;
                if kicked.as_deref() != Some(code.as_str()) {
                    return Err(Failure::Runner(format!(
                        "expected kick {code}, got {kicked:?}"
                    )));
                }
            }
            "close" => self.client(step)?.client.close().await,
            "create_channel" => {
                let body: CreateChannel = parse(&step["body"], "body")?;
                let info = self.http().create_channel(&body).await?;
                expect(step, to_value(&info))?;
            }
            "delete_channel" => {
                let name = step["channel"].as_str().unwrap_or_default();
                self.http().delete_channel(name, Scope::Private).await?;
            }
            "http_publish" => {
                let publish: Publish = parse(&step["message"], "message")?;
                let from = step["message"]["from"].as_str();
                let channel = step["channel"].as_str().unwrap_or_default();
                let ack = self
                    .http()
                    .publish_from(channel, from, &publish, Scope::Private)
                    .await?;
                expect(step, to_value(&ack))?;
            }
            "http_history" => {
                let query: HistoryQuery = parse(&step["query"], "query")?;
                let channel = step["channel"].as_str().unwrap_or_default();
                let page = self.http().history(channel, &query, Scope::Private).await?;
                expect(step, to_value(&page))?;
            }
            other => return Err(Failure::Runner(format!("unknown op `{other}`"))),
        }
        Ok(())
    }
}

/// The `params.key` of a storage step.
fn kv_key(step: &Value) -> Result<String, Failure> {
    step["params"]["key"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| Failure::Runner(format!("{}: no params.key", step["op"])))
}

/// Why a step failed: the SDK returned an error (which an `error` step may expect), or the
/// runner found a mismatch.
enum Failure {
    Sdk(Error),
    Runner(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Sdk(e)
    }
}

impl From<String> for Failure {
    fn from(why: String) -> Self {
        Failure::Runner(why)
    }
}
