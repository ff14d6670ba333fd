//! Switchboard server.
