//! A real server in a temp dir, and a TCP proxy whose connections a test can cut.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchboard_client::{Channel, ChannelEvent, Client, ClientConfig, Message};
use switchboard_server::{Config, Server};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// How long a test waits for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    server: Option<Server>,
    pub config: Config,
    _dir: tempfile::TempDir,
    pub key: String,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts with the defaults changed by `configure`.
    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.listen = "127.0.0.1:0".parse().unwrap();
        config.server.data_dir = dir.path().to_owned();
        config.server.shutdown_grace_ms = 2_000;
        configure(&mut config);
        let server = Server::start(config.clone()).await.unwrap();
        let key = server
            .bootstrap_key
            .clone()
            .expect("first start creates a key");
        TestServer {
            server: Some(server),
            config,
            _dir: dir,
            key,
        }
    }

    pub fn server(&self) -> &Server {
        self.server.as_ref().unwrap()
    }

    pub fn url(&self) -> String {
        self.server().ws_url()
    }

    pub fn addr(&self) -> SocketAddr {
        self.server().local_addr
    }

    /// A client configuration with fast reconnects.
    pub fn config(&self) -> ClientConfig {
        fast(ClientConfig::new(self.url(), &self.key))
    }

    pub async fn client(&self) -> Client {
        Client::connect(self.config()).await.unwrap()
    }

    /// Graceful shutdown: sockets close with 1001.
    pub async fn stop(&mut self) {
        let old = self.server.take().unwrap();
        self.config.server.listen = old.local_addr;
        old.shutdown().await;
    }

    /// Starts again on the same port and data directory after `stop`.
    pub async fn start_again(&mut self) {
        self.server = Some(Server::start(self.config.clone()).await.unwrap());
    }
}

/// Short backoff so reconnect tests stay fast.
pub fn fast(config: ClientConfig) -> ClientConfig {
    config.with_backoff(switchboard_client::Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
        multiplier: 2.0,
    })
}

/// The next event, failing the test after `WAIT`.
pub async fn next_event(channel: &mut Channel) -> ChannelEvent {
    tokio::time::timeout(WAIT, channel.recv())
        .await
        .expect("an event in time")
        .expect("the channel is open")
}

/// The next message, skipping presence events and reconnect notices.
pub async fn next_message(channel: &mut Channel) -> Message {
    loop {
        match next_event(channel).await {
            ChannelEvent::Message(m) => return m,
            ChannelEvent::PresenceState(_)
            | ChannelEvent::PresenceDiff(_)
            | ChannelEvent::Reconnected => {}
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// Asserts that no message arrives within `within`.
pub async fn assert_no_message(channel: &mut Channel, within: Duration) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, channel.recv()).await {
            Err(_) => return,
            Ok(Some(ChannelEvent::Message(m))) => panic!("unexpected message {m:?}"),
            Ok(Some(_)) => {}
            Ok(None) => return,
        }
    }
}

/// A TCP proxy to `target`: `cut()` drops every connection through it, like a network failure.
pub struct Proxy {
    pub addr: SocketAddr,
    freeze: tokio::sync::watch::Sender<()>,
    /// How many connections the proxy accepted.
    pub accepted: Arc<std::sync::atomic::AtomicUsize>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let registry = links.clone();
        let accepted: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
        let (freeze, freeze_rx) = tokio::sync::watch::channel(());
        let count = accepted.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut freeze = freeze_rx.clone();
                // Only connections open at the time of a freeze freeze.
                freeze.borrow_and_update();
                let link = tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = freeze.changed() => {
                            // Hold both sockets open and silent, like a dead network path.
                            std::future::pending::<()>().await;
                        }
                    }
                });
                registry.lock().unwrap().push(link);
            }
        });
        Proxy {
            addr,
            freeze,
            accepted,
            links,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    /// How many connections the proxy accepted so far.
    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Stops forwarding on every open connection without closing it; new ones work.
    pub fn freeze(&self) {
        self.freeze.send_replace(());
    }

    /// Drops every open connection; new ones are accepted again.
    pub fn cut(&self) {
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}
