//! The TypeScript toolchain of the declaration tests: npm packages from the
//! committed lockfile in `tests/ts/` (installed with `npm ci` when missing)
//! and their `tsc`. In CI (`CI=true`) a missing toolchain is a failure;
//! elsewhere the checks are skipped, loudly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use broadcast_test_support::env::{is_ci, loud};

/// `tests/ts`.
pub fn ts_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ts")
}

/// Whether `tsc` is installed, running `npm ci` (once per test binary) if it
/// is not. Panics in CI when it cannot be installed.
pub fn npm_ready() -> bool {
    static READY: OnceLock<bool> = OnceLock::new();
    *READY.get_or_init(|| {
        let dir = ts_dir();
        if dir.join("node_modules/.bin/tsc").exists() {
            return true;
        }
        match Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund"])
            .current_dir(&dir)
            .status()
        {
            Ok(s) if s.success() => true,
            other => {
                assert!(!is_ci(), "npm ci failed in CI: {other:?}");
                loud(&format!(
                    "=== SKIPPING typescript check: npm/node not available ({other:?}) ==="
                ));
                false
            }
        }
    })
}

/// Runs `tsc` from `tests/ts` with `args`; waits for it to exit.
pub fn tsc(args: &[&str]) -> Output {
    let dir = ts_dir();
    Command::new(dir.join("node_modules/.bin/tsc"))
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap()
}

/// tsc's stdout and stderr, for failure messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
