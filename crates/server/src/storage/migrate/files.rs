//! The files of the data directory that go with the database: the stream spool files (the
//! bytes of the streams in flight, which `streams` rows point at) and the key files.

use super::MigrateError;
use super::checksum::{Canon, Summary};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// The key files a first start writes, copied so they are where the docs say they are.
const KEY_FILES: &[&str] = &["default.key", "admin.key"];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MigrateError + '_ {
    move |error| MigrateError::Io {
        path: path.to_owned(),
        error,
    }
}

/// The SHA-256 of a file's bytes, and, with `copy_to`, a copy of them written there.
fn hash_file(
    path: &Path,
    mut copy_to: Option<&mut std::fs::File>,
) -> Result<[u8; 32], MigrateError> {
    let mut file = std::fs::File::open(path).map_err(io(path))?;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            return Ok(hash.finalize().into());
        }
        hash.update(&buf[..n]);
        if let Some(out) = copy_to.as_deref_mut() {
            out.write_all(&buf[..n]).map_err(io(path))?;
        }
    }
}

/// The spool files of `dir`, in name order.
fn spool_files(dir: &Path) -> Result<Vec<String>, MigrateError> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        if entry.file_type().map_err(io(dir))?.is_file()
            && let Some(name) = entry.file_name().to_str()
        {
            names.push(name.to_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// Copies the spool files of `from/streams` into `to/streams` (a file already there with
/// the same bytes is kept; one with other bytes stops the copy), then reads the copies back.
/// Both sides are summed up as (name, SHA-256 of the bytes) in name order.
pub(super) fn copy_spool(from: &Path, to: &Path) -> Result<(Summary, Summary), MigrateError> {
    let (source_dir, dest_dir) = (from.join("streams"), to.join("streams"));
    let names = spool_files(&source_dir)?;
    let mut source = Canon::default();
    if !names.is_empty() {
        std::fs::create_dir_all(&dest_dir).map_err(io(&dest_dir))?;
    }
    for name in &names {
        let (src, dst) = (source_dir.join(name), dest_dir.join(name));
        let digest = if dst.exists() {
            let digest = hash_file(&src, None)?;
            if hash_file(&dst, None)? != digest {
                return Err(MigrateError::Io {
                    path: dst,
                    error: std::io::Error::new(
                        std::io::ErrorKind::AlreadyExists,
                        "a different file of this name is already there; move it away",
                    ),
                });
            }
            digest
        } else {
            let partial = dest_dir.join(format!(".{name}.migrating"));
            let mut out = std::fs::File::create(&partial).map_err(io(&partial))?;
            let digest = hash_file(&src, Some(&mut out))?;
            out.sync_all().map_err(io(&partial))?;
            std::fs::rename(&partial, &dst).map_err(io(&dst))?;
            digest
        };
        source.text(name.as_bytes());
        source.bytes(&digest);
        source.end_row();
    }
    if !names.is_empty() {
        std::fs::File::open(&dest_dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&dest_dir))?;
    }
    let mut destination = Canon::default();
    for name in &names {
        let dst = dest_dir.join(name);
        destination.text(name.as_bytes());
        if dst.exists() {
            destination.bytes(&hash_file(&dst, None)?);
        } else {
            destination.null();
        }
        destination.end_row();
    }
    Ok((source.finish(), destination.finish()))
}

/// Copies the key files of `from` that `to` lacks (mode 0600); returns the copies.
pub(super) fn copy_key_files(from: &Path, to: &Path) -> Result<Vec<PathBuf>, MigrateError> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut copied = Vec::new();
    for name in KEY_FILES {
        let (src, dst) = (from.join(name), to.join(name));
        if !src.is_file() || dst.exists() {
            continue;
        }
        let bytes = std::fs::read(&src).map_err(io(&src))?;
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&dst)
            .map_err(io(&dst))?;
        out.write_all(&bytes)
            .and_then(|()| out.sync_all())
            .map_err(io(&dst))?;
        copied.push(dst);
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_files_are_copied_and_read_back() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::create_dir(from.path().join("streams")).unwrap();
        std::fs::write(from.path().join("streams/st_b"), vec![7u8; 3 << 20]).unwrap();
        std::fs::write(from.path().join("streams/st_a"), b"").unwrap();
        let (source, destination) = copy_spool(from.path(), to.path()).unwrap();
        assert_eq!(source.rows, 2);
        assert_eq!(source, destination);
        assert_eq!(
            std::fs::read(to.path().join("streams/st_b")).unwrap(),
            vec![7u8; 3 << 20]
        );
        // Again: the copies are kept. A different file of the same name stops the copy.
        assert_eq!(copy_spool(from.path(), to.path()).unwrap().1, destination);
        std::fs::write(to.path().join("streams/st_a"), b"other").unwrap();
        assert!(copy_spool(from.path(), to.path()).is_err());
    }

    #[test]
    fn key_files_are_copied_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        std::fs::write(from.path().join("default.key"), "sk_x\n").unwrap();
        let copied = copy_key_files(from.path(), to.path()).unwrap();
        assert_eq!(copied, vec![to.path().join("default.key")]);
        let mode = std::fs::metadata(&copied[0]).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(copy_key_files(from.path(), to.path()).unwrap().is_empty());
    }
}
