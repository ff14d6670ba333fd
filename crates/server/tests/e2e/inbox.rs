//! The inbox on the wire, as any Phoenix client sees it: `new_message` frames, `ack` and its
//! alias `acknowledge`, `reject`, `receipt`, and malformed settlements.

use crate::harness::TestServer;
use serde_json::json;

#[tokio::test]
async fn inbox_frames_and_settlements_on_the_wire() {
    let s = TestServer::start().await;
    let mut alice = s.raw().await;
    alice
        .join("work", json!({"agent_name": "alice"}))
        .await
        .unwrap();
    let sent = alice
        .publish(
            "work",
            json!({"type": "task", "data": 1, "to": "bob", "receipt": true}),
        )
        .await
        .unwrap();
    let id = sent["id"].as_str().unwrap().to_owned();

    let mut bob = s.raw().await;
    bob.join(
        "work",
        json!({"agent_name": "bob", "inbox": true, "presence": false}),
    )
    .await
    .unwrap();
    let delivered = bob.event("new_message").await;
    assert_eq!(delivered.topic, "channel:work");
    assert_eq!(delivered.payload["delivery_count"], 1);
    assert_eq!(delivered.payload["message"]["id"], id.as_str());
    assert_eq!(delivered.payload["message"]["to"], "bob");
    let receipt = alice.event("receipt").await;
    assert_eq!(
        receipt.payload,
        json!({"id": id, "to": "bob", "status": "delivered", "delivery_count": 1})
    );

    // Bad settlements get clear errors; the connection lives on.
    let bad = bob
        .request("channel:work", "reject", json!({"id": id, "because": "x"}))
        .await
        .unwrap_err();
    assert_eq!(bad["code"], "invalid_payload");
    let bad = bob
        .request("channel:work", "ack", json!({"id": 7}))
        .await
        .unwrap_err();
    assert_eq!(bad["code"], "invalid_payload");
    let not_joined = bob
        .request("channel:elsewhere", "ack", json!({"id": id}))
        .await
        .unwrap_err();
    assert_eq!(not_joined["code"], "not_joined");

    // The design documents' event name works as well as `ack`.
    bob.request("channel:work", "acknowledge", json!({"id": id}))
        .await
        .unwrap();
    let receipt = alice.event("receipt").await;
    assert_eq!(receipt.payload["status"], "acknowledged");
    let again = bob
        .request("channel:work", "ack", json!({"id": id}))
        .await
        .unwrap_err();
    assert_eq!(again["code"], "not_found");
}
