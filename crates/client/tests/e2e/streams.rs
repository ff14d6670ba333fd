//! Streams: in-order delivery with the checksum verified end to end, progress and
//! completion, resuming on both sides (a recipient that dropped, a sender across a server
//! restart and across a cut connection), and the failure paths.

use crate::harness::{Proxy, TestServer, WAIT, fast};
use switchboard_client::stream::{self, Incoming, SendOptions};
use switchboard_client::{
    Channel, ChannelEvent, Client, ClientConfig, ErrorCode, JoinParams, StreamOffer, StreamOpen,
};

/// A deterministic payload that is not all the same byte.
fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn params(name: &str) -> JoinParams {
    let mut p = JoinParams::new(name);
    p.presence = false;
    p
}

async fn next_offer(channel: &mut Channel) -> StreamOffer {
    loop {
        match tokio::time::timeout(WAIT, channel.recv()).await.unwrap() {
            Some(ChannelEvent::StreamOffer(offer)) => return offer,
            Some(_) => {}
            None => panic!("the channel ended"),
        }
    }
}

/// Receives the rest of `incoming` from `channel`'s events; `stop_after` ends early (to
/// simulate a recipient that goes away) once that many bytes arrived.
async fn receive(
    channel: &mut Channel,
    mut incoming: Incoming<Vec<u8>>,
    stop_after: Option<u64>,
) -> Result<Vec<u8>, Incoming<Vec<u8>>> {
    let sender = channel.sender();
    loop {
        match tokio::time::timeout(WAIT, channel.recv()).await.unwrap() {
            Some(ChannelEvent::StreamData {
                stream_id,
                offset,
                bytes,
            }) if stream_id == incoming.stream_id() => {
                incoming.data(&sender, offset, &bytes).await.unwrap();
                if stop_after.is_some_and(|n| incoming.received() >= n) {
                    return Err(incoming);
                }
            }
            Some(ChannelEvent::StreamEnd(end)) => {
                return Ok(incoming.finish(&sender, &end).await.unwrap());
            }
            Some(ChannelEvent::StreamError(e)) => panic!("stream failed: {e:?}"),
            Some(_) => {}
            None => panic!("the channel ended"),
        }
    }
}

#[tokio::test]
async fn a_stream_arrives_in_order_verified_and_the_sender_sees_it_complete() {
    let s = TestServer::start().await;
    let (alice, bob) = (s.client().await, s.client().await);
    let mut a = alice.join("files", params("alice")).await.unwrap();
    let mut b = bob.join("files", params("bob")).await.unwrap();
    let data = payload(3 * 1024 * 1024 + 123);
    let options = SendOptions {
        name: Some("data.bin".into()),
        size: Some(data.len() as u64),
        ..SendOptions::default()
    };
    let mut sent_progress = Vec::new();
    let sending = {
        let sender = a.sender();
        let data = data.clone();
        tokio::spawn(async move {
            stream::send(&sender, "bob", &data[..], options, |n| {
                sent_progress.push(n)
            })
            .await
            .map(|sent| (sent, sent_progress))
        })
    };
    let offer = next_offer(&mut b).await;
    assert_eq!(
        (offer.from.as_str(), offer.name.as_deref()),
        ("alice", Some("data.bin"))
    );
    assert_eq!(offer.size, Some(data.len() as u64));
    let incoming = Incoming::accept(&b.sender(), &offer, Vec::new())
        .await
        .unwrap();
    let received = receive(&mut b, incoming, None).await.unwrap();
    assert!(received == data, "the bytes arrived intact and in order");
    let (sent, progress) = sending.await.unwrap().unwrap();
    assert_eq!(sent.total_size, data.len() as u64);
    assert!(progress.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(progress.last(), Some(&(data.len() as u64)));

    // The sender hears how far the recipient got, then that it has everything.
    let mut saw_progress = false;
    loop {
        match tokio::time::timeout(WAIT, a.recv()).await.unwrap().unwrap() {
            ChannelEvent::StreamProgress(p) => {
                assert_eq!(p.stream_id, sent.stream_id);
                saw_progress = true;
            }
            ChannelEvent::StreamComplete(c) => {
                assert_eq!(c.total_size, data.len() as u64);
                break;
            }
            _ => {}
        }
    }
    assert!(saw_progress);
}

#[tokio::test]
async fn a_recipient_that_dropped_resumes_from_what_it_has() {
    let s = TestServer::start().await;
    let alice = s.client().await;
    let a = alice.join("files", params("alice")).await.unwrap();
    let data = payload(6 * 1024 * 1024);
    let sending = {
        let sender = a.sender();
        let data = data.clone();
        tokio::spawn(async move {
            stream::send(&sender, "bob", &data[..], SendOptions::default(), |_| {}).await
        })
    };
    let first = s.client().await;
    let mut b = first.join("files", params("bob")).await.unwrap();
    let offer = next_offer(&mut b).await;
    let incoming = Incoming::accept(&b.sender(), &offer, Vec::new())
        .await
        .unwrap();
    let partial = receive(&mut b, incoming, Some(2 * 1024 * 1024))
        .await
        .expect_err("stopped early");
    let have = partial.received();
    drop(b);
    first.close().await;

    // A new session of bob is offered the stream again, with its checkpoint.
    let second = s.client().await;
    let mut b = second.join("files", params("bob")).await.unwrap();
    let offer = next_offer(&mut b).await;
    assert!(offer.acked >= 1024 * 1024 && offer.acked <= have);
    let prefix = &data[..have as usize];
    let incoming = Incoming::resume(&b.sender(), &offer, prefix, Vec::new())
        .await
        .unwrap();
    let rest = receive(&mut b, incoming, None).await.unwrap();
    assert!([prefix, &rest[..]].concat() == data);
    sending.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_sender_resumes_after_a_server_restart_from_the_last_checkpoint() {
    let mut s = TestServer::start_with(|c| c.streams.checkpoint_bytes = 512 * 1024).await;
    let data = payload(2 * 1024 * 1024);
    let alice = s.client().await;
    let a = alice.join("files", params("alice")).await.unwrap();
    let sender = a.sender();
    let open = StreamOpen {
        to: "bob".into(),
        size: Some(data.len() as u64),
        ..StreamOpen::default()
    };
    let position = sender.stream_open(&open).await.unwrap();
    let id = position.stream_id.clone();
    // Five chunks of 256 KiB: a checkpoint at 1 MiB, and a quarter MiB beyond it.
    for (seq, chunk) in data.chunks(256 * 1024).take(5).enumerate() {
        sender.stream_chunk(&id, seq as u64, chunk).await.unwrap();
    }
    drop(a);
    alice.close().await;
    s.stop().await;
    s.start_again().await;

    let alice = s.client().await;
    let a = alice.join("files", params("alice")).await.unwrap();
    let again = StreamOpen {
        stream_id: Some(id.clone()),
        ..StreamOpen::default()
    };
    let position = a.sender().stream_open(&again).await.unwrap();
    assert_eq!((position.next_seq, position.offset), (4, 1024 * 1024));
    let sent = stream::resume(&a.sender(), &id, &data[..], |_| {})
        .await
        .unwrap();
    assert_eq!(sent.total_size, data.len() as u64);

    let bob = s.client().await;
    let mut b = bob.join("files", params("bob")).await.unwrap();
    let offer = next_offer(&mut b).await;
    let incoming = Incoming::accept(&b.sender(), &offer, Vec::new())
        .await
        .unwrap();
    assert!(receive(&mut b, incoming, None).await.unwrap() == data);
}

#[tokio::test]
async fn chunks_sent_across_a_dropped_connection_arrive_once_and_in_order() {
    let s = TestServer::start().await;
    let proxy = Proxy::start(s.addr()).await;
    let alice = Client::connect(fast(ClientConfig::new(proxy.url(), &s.key)))
        .await
        .unwrap();
    let a = alice.join("files", params("alice")).await.unwrap();
    let bob = s.client().await;
    let mut b = bob.join("files", params("bob")).await.unwrap();
    let data = payload(8 * 1024 * 1024);
    let sending = {
        let sender = a.sender();
        let data = data.clone();
        let mut cut = false;
        let proxy_cut = std::sync::Arc::new(proxy);
        let p = proxy_cut.clone();
        tokio::spawn(async move {
            let sent = stream::send(&sender, "bob", &data[..], SendOptions::default(), |n| {
                if !cut && n >= 2 * 1024 * 1024 {
                    cut = true;
                    p.cut();
                }
            })
            .await;
            (sent, proxy_cut.connections())
        })
    };
    let offer = next_offer(&mut b).await;
    let incoming = Incoming::accept(&b.sender(), &offer, Vec::new())
        .await
        .unwrap();
    assert!(receive(&mut b, incoming, None).await.unwrap() == data);
    let (sent, connections) = sending.await.unwrap();
    sent.unwrap();
    assert!(connections >= 2, "the sender reconnected");
}

#[tokio::test]
async fn bad_streams_fail_with_clear_errors() {
    let s = TestServer::start_with(|c| c.streams.max_bytes = 1024 * 1024).await;
    let (alice, bob) = (s.client().await, s.client().await);
    let mut a = alice.join("files", params("alice")).await.unwrap();
    let mut b = bob.join("files", params("bob")).await.unwrap();
    let (sa, sb) = (a.sender(), b.sender());
    let code = |e: switchboard_client::Error| e.code();
    let open = |to: &str| StreamOpen {
        to: to.into(),
        ..StreamOpen::default()
    };
    assert_eq!(
        code(sa.stream_open(&open("alice")).await.unwrap_err()),
        Some(ErrorCode::InvalidPayload)
    );
    assert_eq!(
        code(sa.stream_open(&open("no name")).await.unwrap_err()),
        Some(ErrorCode::InvalidAgentName)
    );
    let mut big = open("bob");
    big.size = Some(2 * 1024 * 1024);
    assert_eq!(
        code(sa.stream_open(&big).await.unwrap_err()),
        Some(ErrorCode::MessageTooLarge)
    );
    let unknown = StreamOpen {
        stream_id: Some("st_nope".into()),
        ..open("bob")
    };
    assert_eq!(
        code(sa.stream_open(&unknown).await.unwrap_err()),
        Some(ErrorCode::NotFound)
    );

    let id = sa.stream_open(&open("bob")).await.unwrap().stream_id;
    assert_eq!(
        code(sa.stream_chunk(&id, 1, b"x").await.unwrap_err()),
        Some(ErrorCode::InvalidPayload)
    );
    assert_eq!(
        code(sb.stream_chunk(&id, 0, b"x").await.unwrap_err()),
        Some(ErrorCode::Forbidden)
    );
    sa.stream_chunk(&id, 0, &payload(600 * 1024)).await.unwrap();
    // A chunk seen before is acknowledged again, not written twice.
    let again = sa.stream_chunk(&id, 0, &payload(600 * 1024)).await.unwrap();
    assert_eq!((again.next_seq, again.offset), (1, 600 * 1024));
    assert_eq!(
        code(
            sa.stream_chunk(&id, 1, &payload(600 * 1024))
                .await
                .unwrap_err()
        ),
        Some(ErrorCode::MessageTooLarge)
    );
    assert_eq!(
        code(sb.stream_accept(&id, 700 * 1024).await.unwrap_err()),
        Some(ErrorCode::InvalidPayload)
    );
    // A wrong checksum fails the stream on both sides.
    let err = sa
        .stream_close(&id, &"0".repeat(64), 600 * 1024)
        .await
        .unwrap_err();
    assert_eq!(code(err), Some(ErrorCode::ChecksumMismatch));
    for channel in [&mut a, &mut b] {
        loop {
            match tokio::time::timeout(WAIT, channel.recv())
                .await
                .unwrap()
                .unwrap()
            {
                ChannelEvent::StreamError(e) => {
                    assert_eq!(
                        (e.stream_id.as_str(), e.code),
                        (id.as_str(), ErrorCode::ChecksumMismatch)
                    );
                    break;
                }
                _ => continue,
            }
        }
    }
    assert_eq!(
        code(sa.stream_chunk(&id, 1, b"x").await.unwrap_err()),
        Some(ErrorCode::NotFound)
    );

    // Either side cancels; both are told.
    let id = sa.stream_open(&open("bob")).await.unwrap().stream_id;
    sb.stream_cancel(&id, Some("no room")).await.unwrap();
    for channel in [&mut a, &mut b] {
        loop {
            match tokio::time::timeout(WAIT, channel.recv())
                .await
                .unwrap()
                .unwrap()
            {
                ChannelEvent::StreamCancelled(c) => {
                    assert_eq!(
                        (c.by.as_str(), c.reason.as_deref()),
                        ("bob", Some("no room"))
                    );
                    break;
                }
                _ => continue,
            }
        }
    }
}

#[tokio::test]
async fn completing_a_team_channel_purges_its_streams() {
    let s = TestServer::start_with(|c| c.storage.retention_interval_ms = 100).await;
    let http = switchboard_client::HttpClient::new(&s.server().http_url(), s.key.clone()).unwrap();
    let mut team = switchboard_client::CreateChannel::new("huddle");
    team.members = Some(vec!["alice".into(), "bob".into()]);
    http.create_channel(&team).await.unwrap();
    let alice = s.client().await;
    let a = alice.join("huddle", params("alice")).await.unwrap();
    let open = StreamOpen {
        to: "bob".into(),
        ..StreamOpen::default()
    };
    let id = a.sender().stream_open(&open).await.unwrap().stream_id;
    a.sender()
        .stream_chunk(&id, 0, &payload(1000))
        .await
        .unwrap();
    let spool = s.config.server.data_dir.join("streams");
    assert_eq!(std::fs::read_dir(&spool).unwrap().count(), 1);
    http.complete_channel("huddle", switchboard_client::Scope::Private)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::fs::read_dir(&spool).unwrap().count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the spool was not purged"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
