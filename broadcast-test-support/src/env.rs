//! What a test may assume about the machine it runs on: whether it runs in
//! CI, whether a binary it needs is on `PATH`, and where it may write.
//!
//! # Skipping when a binary is absent
//!
//! A test that needs an external program (`redis-server`, `redis-cli`)
//! skips outside CI when the program is not on `PATH`, after printing a loud
//! `=== SKIPPING <test>: ... ===` line straight to stderr (not captured by
//! libtest). When the environment variable `CI` is `true` (or `1`), a
//! missing binary is instead an error ([`HarnessError::MissingBinaryInCi`]),
//! so the test fails: CI must never pass by skipping.

use std::ffi::OsStr;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::warn;

use crate::error::{HarnessError, io_err};

/// Whether `CI` is set to `true` (case-insensitive) or `1`.
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Writes `msg` and a newline straight to the process's stderr: libtest
/// captures `eprintln!`, and a skip must be seen.
pub fn loud(msg: &str) {
    let _ = writeln!(io::stderr().lock(), "{msg}");
}

/// Name of the running test (libtest names each test's thread after it).
pub fn current_test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("<unnamed test>")
        .to_owned()
}

/// `cargo` (the one running the tests, `$CARGO`) as a test may run it to
/// build more of the workspace, without the variables cargo set for the
/// test process (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...): a build script
/// that tracks one of them (ring's tracks `CARGO_MANIFEST_DIR`) would see it
/// change and rebuild, with everything above it, what `cargo test` built
/// without them, and the next `cargo test` would rebuild it all back.
///
/// ```no_run
/// let status = broadcast_test_support::env::cargo()
///     .args(["build", "--examples"])
///     .status()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn cargo() -> std::process::Command {
    let mut cmd =
        std::process::Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    for (name, _) in std::env::vars_os() {
        let Some(name) = name.to_str() else { continue };
        if SET_FOR_TESTS.contains(&name) || name.starts_with("CARGO_PKG_") {
            cmd.env_remove(name);
        }
    }
    cmd
}

/// What cargo sets for a test process besides `CARGO` and `CARGO_PKG_*`.
const SET_FOR_TESTS: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Checks that `redis-server` is on `PATH`.
///
/// `Ok(true)`: present. `Ok(false)`: absent and not CI; a loud
/// `=== SKIPPING {test_name}: ... ===` line was written to stderr and the
/// caller should return early. `Err`: absent and `CI=true`; the test must fail.
pub fn redis_available(test_name: &str) -> Result<bool, HarnessError> {
    Ok(locate_binary("redis-server", test_name)?.is_some())
}

/// Finds `binary` on `PATH` under the skip policy of this module: `Ok(None)`
/// (after the loud skip line) when absent outside CI, `Err` when absent in CI.
pub fn locate_binary(
    binary: &'static str,
    test_name: &str,
) -> Result<Option<PathBuf>, HarnessError> {
    locate_binary_in(
        binary,
        std::env::var_os("PATH").as_deref(),
        is_ci(),
        test_name,
    )
}

/// The executable `binary` on `PATH`, if any, with no skip policy: for a
/// program (the bench) that reports a missing binary its own way.
pub fn find_on_path(binary: &str) -> Option<PathBuf> {
    find_in(binary, &std::env::var_os("PATH")?)
}

fn locate_binary_in(
    binary: &'static str,
    path_var: Option<&OsStr>,
    ci: bool,
    test_name: &str,
) -> Result<Option<PathBuf>, HarnessError> {
    if let Some(found) = path_var.and_then(|p| find_in(binary, p)) {
        return Ok(Some(found));
    }
    if ci {
        return Err(HarnessError::MissingBinaryInCi { binary });
    }
    let package = debian_package(binary);
    let msg = format!(
        "=== SKIPPING {test_name}: {binary} not found on PATH; install it (apt-get install {package}) ==="
    );
    loud(&msg);
    warn!("{msg}");
    Ok(None)
}

/// The Debian package that brings `binary`, for the install hint.
pub(crate) fn debian_package(binary: &str) -> &str {
    match binary {
        "redis-cli" => "redis-tools",
        other => other,
    }
}

fn find_in(binary: &str, path_var: &OsStr) -> Option<PathBuf> {
    std::env::split_paths(path_var)
        .filter(|dir| !dir.as_os_str().is_empty())
        .map(|dir| dir.join(binary))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    let Ok(meta) = fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() {
        return false;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        meta.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        true
    }
}

/// A fresh directory `{prefix}-{pid}-{n}-{nanos}` under the system temp dir,
/// removed (with everything in it) on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// Creates the directory. Directories of the same prefix whose process
    /// is gone are removed first: a process killed before its `Drop` ran
    /// (a SIGKILLed bench, an aborted test run) leaves its own behind.
    pub fn new(prefix: &str) -> Result<TempDir, HarnessError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let base = std::env::temp_dir();
        remove_orphans(&base, prefix);
        for _ in 0..100 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let nanos = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            let dir = base.join(format!("{prefix}-{}-{n}-{nanos:08x}", std::process::id()));
            match fs::create_dir(&dir) {
                Ok(()) => return Ok(TempDir(dir)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
            }
        }
        Err(HarnessError::Io {
            context: format!("creating a fresh temp dir under {}", base.display()),
            source: io::Error::new(io::ErrorKind::AlreadyExists, "100 names already taken"),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Removes `{prefix}-{pid}-{n}-{nanos}` directories under `base` whose pid
/// no longer runs. Only where `/proc` tells which pids run.
fn remove_orphans(base: &Path, prefix: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(prefix)?.strip_prefix('-'))
            .and_then(owner_pid)
        else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// The pid of a `{pid}-{n}-{nanos}` name tail, if it has exactly that shape
/// (so that `chat` does not claim the directories of `chat-server`).
fn owner_pid(tail: &str) -> Option<u32> {
    let mut parts = tail.split('-');
    let (pid, n, nanos) = (parts.next()?, parts.next()?, parts.next()?);
    let shaped = parts.next().is_none()
        && n.bytes().all(|b| b.is_ascii_digit())
        && !n.is_empty()
        && nanos.bytes().all(|b| b.is_ascii_hexdigit())
        && !nanos.is_empty();
    shaped.then(|| pid.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_skips_outside_ci_and_fails_in_ci() {
        let empty = TempDir::new("env-unit").unwrap();
        let path = std::env::join_paths([empty.path()]).unwrap();
        assert!(
            locate_binary_in("redis-server", Some(&path), false, "unit")
                .unwrap()
                .is_none()
        );
        assert!(
            locate_binary_in("redis-server", None, false, "unit")
                .unwrap()
                .is_none()
        );
        let err = locate_binary_in("redis-server", Some(&path), true, "unit").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("redis-server not found on PATH"), "{msg}");
        assert!(msg.contains("CI=true"), "{msg}");
        assert!(msg.contains("apt-get install redis-server"), "{msg}");
        let err = locate_binary_in("openssl", Some(&path), true, "unit").unwrap_err();
        assert!(err.to_string().contains("apt-get install openssl"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn finds_only_executable_files_on_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("env-unit").unwrap();
        let fake = dir.path().join("redis-server");
        fs::write(&fake, "#!/bin/sh\n").unwrap();
        let path = std::env::join_paths([dir.path()]).unwrap();
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(find_in("redis-server", &path), None);
        fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(find_in("redis-server", &path), Some(fake.clone()));
        assert_eq!(
            locate_binary_in("redis-server", Some(&path), true, "unit").unwrap(),
            Some(fake)
        );
    }

    #[test]
    fn temp_dir_is_fresh_and_removed_on_drop() {
        let a = TempDir::new("env-unit").unwrap();
        let b = TempDir::new("env-unit").unwrap();
        assert_ne!(a.path(), b.path());
        let inside = a.path().join("f");
        fs::write(&inside, "x").unwrap();
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().is_dir());
    }

    #[test]
    fn orphans_of_gone_processes_are_removed_and_live_ones_kept() {
        let base = TempDir::new("env-unit").unwrap();
        // No pid is above the kernel's pid_max (at most 2^22).
        let gone = base.path().join("p-99999999-0-0abc");
        let live = base.path().join(format!("p-{}-0-0abc", std::process::id()));
        let longer_prefix = base.path().join("p-x-99999999-0-0abc");
        for d in [&gone, &live, &longer_prefix] {
            fs::create_dir(d).unwrap();
        }
        remove_orphans(base.path(), "p");
        if Path::new("/proc/self").exists() {
            assert!(!gone.exists());
        }
        assert!(live.exists());
        assert!(longer_prefix.exists());
    }

    #[test]
    fn owner_pid_wants_the_whole_shape() {
        assert_eq!(owner_pid("12-3-0a0b"), Some(12));
        assert_eq!(owner_pid("x-12-3-0a0b"), None);
        assert_eq!(owner_pid("12-3"), None);
        assert_eq!(owner_pid("12-3-zz"), None);
        assert_eq!(owner_pid("12--0a"), None);
    }
}
