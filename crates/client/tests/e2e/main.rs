//! End-to-end tests of the SDK against the real server on port 0 (one test binary).

mod discovery;
mod harness;
mod http;
mod inbox;
mod messaging;
mod resume;
mod streams;
mod temporary_keys;
mod webhooks;
