//! Mounted files as a source: `<dir>/<NAME>`, as Cloud Run (`--set-secrets
//! /run/secrets/NAME=…`) and Kubernetes (a Secret volume) mount them. One trailing newline
//! is trimmed, since `echo` and most editors add one; an empty file counts as absent.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::source::{Fetched, Origin, SecretSource};
use crate::Secret;

/// Where Cloud Run and Kubernetes manifests in `deploy/` mount secrets.
pub const DEFAULT_SECRETS_DIR: &str = "/run/secrets";

/// Reads `<dir>/<NAME>`.
#[derive(Debug, Clone)]
pub struct FileSource {
    dir: PathBuf,
}

impl FileSource {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        FileSource { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        // A secret name is one path component: never `..` or a nested path.
        let plain = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
            && name != "."
            && name != "..";
        plain.then(|| self.dir.join(name))
    }
}

/// The bytes without one trailing `\n` or `\r\n`.
fn trim_one_newline(mut bytes: Vec<u8>) -> Vec<u8> {
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    bytes
}

#[async_trait]
impl SecretSource for FileSource {
    fn describe(&self) -> String {
        format!("files in {}", self.dir.display())
    }

    fn location(&self, name: &str) -> String {
        format!("file {}", self.dir.join(name).display())
    }

    async fn fetch(&self, name: &str) -> Fetched {
        let Some(path) = self.path(name) else {
            return Fetched::Failed(format!("`{name}` is not a plain file name"));
        };
        match tokio::fs::read(&path).await {
            Ok(bytes) => {
                let bytes = trim_one_newline(bytes);
                if bytes.is_empty() {
                    Fetched::Absent
                } else {
                    Fetched::Found(Secret::new(bytes), Origin::File(path))
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => Fetched::Absent,
            Err(e) => Fetched::Failed(format!("cannot read {}: {e}", path.display())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_trims_one_newline_and_refuses_paths() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("A"), "value\n\n").expect("write");
        std::fs::write(dir.path().join("B"), "value\r\n").expect("write");
        std::fs::write(dir.path().join("EMPTY"), "\n").expect("write");
        let source = FileSource::new(dir.path());
        match source.fetch("A").await {
            Fetched::Found(secret, Origin::File(path)) => {
                assert_eq!(secret.expose(), b"value\n");
                assert_eq!(path, dir.path().join("A"));
            }
            other => panic!("{other:?}"),
        }
        match source.fetch("B").await {
            Fetched::Found(secret, _) => assert_eq!(secret.expose(), b"value"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(source.fetch("EMPTY").await, Fetched::Absent));
        assert!(matches!(source.fetch("MISSING").await, Fetched::Absent));
        assert!(matches!(
            source.fetch("../etc/passwd").await,
            Fetched::Failed(_)
        ));
        assert!(matches!(source.fetch("..").await, Fetched::Failed(_)));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn an_unreadable_file_is_a_failure_not_an_absence() {
        let dir = tempfile::tempdir().expect("tempdir");
        // A directory where the file should be: reading it fails with something else
        // than "not found", even as root.
        std::fs::create_dir(dir.path().join("A")).expect("mkdir");
        let source = FileSource::new(dir.path());
        assert!(matches!(source.fetch("A").await, Fetched::Failed(_)));
    }
}
