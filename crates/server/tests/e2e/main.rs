//! End-to-end tests against the real server on port 0. One binary, one module per behaviour.

mod harness;

mod channels;
mod history;
mod inbox;
mod keys;
mod kv;
mod limits;
mod messaging;
mod presence;
mod security;
mod signaling;
mod team_channels;
mod temporary_keys;
mod tiers;
mod usage;
mod websocket;
