//! Switchboard Rust SDK.
