//! Message payloads that carry their own scheduled send time.
//!
//! Every payload is ASCII (safe inside JSON strings, MQTT, NATS and Socket.IO alike) and holds
//! `@@ts=` followed by 19 digits: nanoseconds since the Unix epoch at which the open-loop
//! publisher *scheduled* it. Receivers find the marker wherever the protocol put it, so
//! latency is measured the same way for every server, and a stalled sender cannot hide it.

const MARK: &[u8] = b"@@ts=";
const DIGITS: usize = 19;

/// Nanoseconds since the Unix epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// A payload of exactly `size` bytes (at least 24) stamped with `scheduled_ns`.
pub fn make(size: usize, scheduled_ns: u64) -> String {
    let mut s = format!("@@ts={scheduled_ns:019}@@");
    while s.len() < size {
        s.push('x');
    }
    s
}

/// Calls `f` with the timestamp of every payload inside `frame`.
pub fn scan(frame: &[u8], mut f: impl FnMut(u64)) {
    let mut rest = frame;
    while let Some(i) = find(rest, MARK) {
        let digits = &rest[i + MARK.len()..];
        if digits.len() < DIGITS {
            return;
        }
        let mut ts = 0u64;
        for &d in &digits[..DIGITS] {
            ts = ts * 10 + (d.wrapping_sub(b'0') as u64 % 10);
        }
        f(ts);
        rest = &digits[DIGITS..];
    }
}

/// The position of the first `needle` in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = needle[0];
    let mut start = 0;
    while let Some(i) = haystack[start..].iter().position(|&b| b == first) {
        let at = start + i;
        if haystack[at..].starts_with(needle) {
            return Some(at);
        }
        start = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    #[test]
    fn round_trip() {
        let p = super::make(100, 1_700_000_000_123_456_789);
        assert_eq!(p.len(), 100);
        let framed = format!("[null,null,\"channel:b\",\"message\",{{\"data\":\"{p}\"}}]MSG x{p}");
        let mut seen = Vec::new();
        super::scan(framed.as_bytes(), |t| seen.push(t));
        assert_eq!(seen, vec![1_700_000_000_123_456_789; 2]);
    }
}
