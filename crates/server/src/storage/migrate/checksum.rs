//! The canonical form both sides of a copy are summed up in: a row count and a SHA-256.
//!
//! Each row is its values in column order, each value a tag byte and its bytes, so the form
//! depends on the values and not on how a backend types them:
//!
//! | value | encoding |
//! |---|---|
//! | NULL | `0` |
//! | integer (SQLite `INTEGER`; PostgreSQL `BIGINT`, `INTEGER`, and `BOOLEAN` as 0 or 1) | `1`, i64 big-endian |
//! | text | `2`, u64 big-endian length, UTF-8 bytes with NUL as U+FFFD (PostgreSQL's text cannot hold NUL, so the server stores U+FFFD there) |
//! | bytes (`BLOB`, `BYTEA`) | `3`, u64 big-endian length, the bytes |
//! | real | `4`, the f64's bits big-endian (no table has one; a stray one in SQLite is refused by the copy) |
//!
//! The rows are hashed in primary-key order, text keys compared bytewise on both sides.

use sha2::{Digest, Sha256};

/// A side of a copy summed up: how many rows (records, files) and their SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Rows (records, files) counted.
    pub rows: u64,
    /// SHA-256 of their canonical form, in order.
    pub checksum: [u8; 32],
}

impl Summary {
    /// The checksum in hex.
    pub fn hex(&self) -> String {
        hex::encode(self.checksum)
    }
}

/// Builds a [`Summary`] value by value, row by row.
#[derive(Default)]
pub(crate) struct Canon {
    hash: Sha256,
    rows: u64,
}

impl Canon {
    pub(crate) fn null(&mut self) {
        self.hash.update([0]);
    }

    pub(crate) fn int(&mut self, v: i64) {
        self.hash.update([1]);
        self.hash.update(v.to_be_bytes());
    }

    pub(crate) fn opt_int(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.int(v),
            None => self.null(),
        }
    }

    pub(crate) fn text(&mut self, utf8: &[u8]) {
        self.hash.update([2]);
        if utf8.contains(&0) {
            let mut replaced = Vec::with_capacity(utf8.len() + 8);
            for &b in utf8 {
                match b {
                    0 => replaced.extend_from_slice("\u{FFFD}".as_bytes()),
                    b => replaced.push(b),
                }
            }
            self.hash.update((replaced.len() as u64).to_be_bytes());
            self.hash.update(&replaced);
        } else {
            self.hash.update((utf8.len() as u64).to_be_bytes());
            self.hash.update(utf8);
        }
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) {
        self.hash.update([3]);
        self.hash.update((b.len() as u64).to_be_bytes());
        self.hash.update(b);
    }

    pub(crate) fn real(&mut self, f: f64) {
        self.hash.update([4]);
        self.hash.update(f.to_bits().to_be_bytes());
    }

    /// Ends a row (or record, or file).
    pub(crate) fn end_row(&mut self) {
        self.rows += 1;
    }

    pub(crate) fn finish(self) -> Summary {
        Summary {
            rows: self.rows,
            checksum: self.hash.finalize().into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(f: impl FnOnce(&mut Canon)) -> Summary {
        let mut c = Canon::default();
        f(&mut c);
        c.finish()
    }

    #[test]
    fn values_are_told_apart_by_type_and_boundaries() {
        // Text vs bytes, integer vs text, and where one value ends.
        assert_ne!(sum(|c| c.text(b"ab")), sum(|c| c.bytes(b"ab")));
        assert_ne!(sum(|c| c.int(1)), sum(|c| c.text(b"1")));
        assert_ne!(
            sum(|c| {
                c.text(b"a");
                c.text(b"b")
            }),
            sum(|c| {
                c.text(b"ab");
                c.text(b"")
            })
        );
        assert_ne!(sum(|c| c.null()), sum(|c| c.int(0)));
        // NUL counts as the U+FFFD PostgreSQL stores instead.
        assert_eq!(
            sum(|c| c.text(b"a\0b")),
            sum(|c| c.text("a\u{FFFD}b".as_bytes()))
        );
        // Rows are counted.
        assert_eq!(sum(|c| c.end_row()).rows, 1);
    }
}
