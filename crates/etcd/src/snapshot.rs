//! Integrity of snapshots from the v3 snapshot API.
//!
//! The server streams the bbolt database and then one more message holding the SHA-256 of
//! everything it sent before (etcd `server/etcdserver/api/v3rpc/maintenance.go`). A saved
//! snapshot is therefore `db ‖ sha256(db)`, and `etcdutl snapshot restore` checks exactly
//! that: the file size is 32 more than a multiple of 512 (`hasChecksum`), and the SHA-256 of
//! all but the last 32 bytes equals those 32 bytes (`copyAndVerifyDB`).

use std::{fs::File, io::Read, path::Path};

use aws_lc_rs::digest::{Context, SHA256};
use serde::Serialize;

/// SHA-256 digest length, the size of the trailer.
pub const TRAILER_LEN: usize = 32;

/// What a snapshot's bytes say about themselves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotCheck {
    /// Bytes in the file, trailer included.
    pub size: u64,
    /// SHA-256 of the whole file, as `sha256sum` prints it.
    pub sha256: String,
    /// The last 32 bytes, hex.
    pub trailer: String,
    /// SHA-256 of everything before the trailer, hex.
    pub content_sha256: String,
    /// `size % 512 == 32`, etcd's test for "has an appended hash".
    pub has_trailer_shape: bool,
    /// `content_sha256 == trailer`.
    pub trailer_matches: bool,
}

impl SnapshotCheck {
    /// A snapshot `etcdutl snapshot restore` accepts without `--skip-hash-check`.
    pub fn is_valid(&self) -> bool {
        self.size > TRAILER_LEN as u64 && self.has_trailer_shape && self.trailer_matches
    }
}

/// Checks a snapshot as it streams by, holding back only the last 32 bytes. One SHA-256
/// pass: the content's hash state, fed the held-back tail, is the whole file's hash.
#[derive(Clone)]
pub struct Verifier {
    content: Context,
    tail: Vec<u8>,
    size: u64,
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    pub fn new() -> Self {
        Verifier {
            content: Context::new(&SHA256),
            tail: Vec::with_capacity(2 * TRAILER_LEN),
            size: 0,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        if data.len() >= TRAILER_LEN {
            self.content.update(&self.tail);
            let (body, tail) = data.split_at(data.len() - TRAILER_LEN);
            self.content.update(body);
            self.tail.clear();
            self.tail.extend_from_slice(tail);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > TRAILER_LEN {
                let excess = self.tail.len() - TRAILER_LEN;
                self.content.update(&self.tail[..excess]);
                self.tail.drain(..excess);
            }
        }
    }

    pub fn finish(self) -> SnapshotCheck {
        let mut whole = self.content.clone();
        whole.update(&self.tail);
        let content = hex::encode(self.content.finish());
        let trailer = hex::encode(&self.tail);
        SnapshotCheck {
            size: self.size,
            sha256: hex::encode(whole.finish()),
            has_trailer_shape: self.size % 512 == TRAILER_LEN as u64,
            trailer_matches: self.tail.len() == TRAILER_LEN && content == trailer,
            trailer,
            content_sha256: content,
        }
    }
}

/// Reads a saved snapshot once and checks its trailer.
pub fn verify_file(path: &Path) -> std::io::Result<SnapshotCheck> {
    let mut f = File::open(path)?;
    let mut v = Verifier::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(v.finish());
        }
        v.update(&buf[..n]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    // An independent SHA-256 implementation as the reference.
    use sha2::{Digest, Sha256};

    use super::*;

    fn snapshot(db_len: usize) -> Vec<u8> {
        let mut db: Vec<u8> = (0..db_len).map(|i| (i * 7 % 251) as u8).collect();
        let sha = Sha256::digest(&db);
        db.extend_from_slice(&sha);
        db
    }

    fn check_in_pieces(data: &[u8], piece: usize) -> SnapshotCheck {
        let mut v = Verifier::new();
        for c in data.chunks(piece) {
            v.update(c);
        }
        v.finish()
    }

    #[test]
    fn valid_snapshot_in_any_piece_size() {
        let data = snapshot(4096 * 3);
        for piece in [1, 5, 31, 32, 33, 4096, 32 * 1024, data.len()] {
            let c = check_in_pieces(&data, piece);
            assert!(c.is_valid(), "piece {piece}: {c:?}");
            assert_eq!(c.size, data.len() as u64);
            assert_eq!(c.sha256, hex::encode(Sha256::digest(&data)));
            assert_eq!(c.trailer, c.content_sha256);
        }
    }

    #[test]
    fn corruption_and_truncation_are_caught() {
        let mut data = snapshot(4096);
        data[100] ^= 1;
        assert!(!check_in_pieces(&data, 1000).trailer_matches);
        let data = snapshot(4096);
        let cut = &data[..data.len() - 1];
        let c = check_in_pieces(cut, 1000);
        assert!(!c.is_valid(), "{c:?}");
        // A raw bbolt file copied from a data dir has no trailer: size is a page multiple.
        let c = check_in_pieces(&data[..4096], 512);
        assert!(!c.has_trailer_shape && !c.is_valid());
        assert!(!check_in_pieces(&[], 1).is_valid());
        // Below 32 bytes everything is "tail"; the whole-file hash is still right.
        for data in [&b""[..], b"abc", &[7u8; 32], &[9u8; 33]] {
            assert_eq!(
                check_in_pieces(data, 5).sha256,
                hex::encode(Sha256::digest(data))
            );
        }
    }

    #[test]
    fn file_check_matches_stream_check() {
        let data = snapshot(8192);
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        std::fs::write(&p, &data).unwrap();
        assert_eq!(verify_file(&p).unwrap(), check_in_pieces(&data, 777));
    }
}
