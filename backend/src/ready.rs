//! The ready file: once the service listens, the address it actually bound (`--listen
//! 127.0.0.1:0` picks a free port) is written to `--ready-file`, so whoever started it
//! (tests, a supervisor) learns the port without guessing one first.

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;

/// Removes a ready file a previous run left, so nobody waiting for this run reads the
/// last one's address. A file that is not there is fine.
pub fn clear(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes `address` and a newline to `path` atomically: a temporary file in the same
/// directory, then a rename, so a reader never sees a partial address.
pub fn write(path: &Path, address: SocketAddr) -> std::io::Result<()> {
    let name = path.file_name().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the ready file path names no file",
        )
    })?;
    let mut temporary_name = std::ffi::OsString::from(".");
    temporary_name.push(name);
    temporary_name.push(format!(".{}.tmp", std::process::id()));
    let temporary = path.with_file_name(temporary_name);
    let written = std::fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(format!("{address}\n").as_bytes())?;
        file.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&temporary, path)) {
        let _ = std::fs::remove_file(&temporary);
        return Err(e);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_address_is_written_whole_and_nothing_else_is_left() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ready");
        write(&path, "127.0.0.1:4321".parse().expect("addr")).expect("written");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1:4321\n"
        );
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("ready")]);
        // A second start replaces it.
        write(&path, "127.0.0.1:1".parse().expect("addr")).expect("rewritten");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            "127.0.0.1:1\n"
        );
    }

    #[test]
    fn a_stale_file_is_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ready");
        clear(&path).expect("nothing to clear");
        std::fs::write(&path, "127.0.0.1:9\n").expect("stale");
        clear(&path).expect("cleared");
        assert!(!path.exists());
    }

    #[test]
    fn a_directory_that_does_not_exist_is_an_error() {
        let path = Path::new("/nonexistent/gardien-backend/ready");
        assert!(write(path, "127.0.0.1:1".parse().expect("addr")).is_err());
    }
}
