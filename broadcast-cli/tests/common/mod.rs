//! A throwaway Cargo project in the system temp folder, and the built
//! `cargo-broadcast` binary to run in it.
#![allow(dead_code)] // each test file uses a different part

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

pub const BIN: &str = env!("CARGO_BIN_EXE_cargo-broadcast");

/// The workspace root (this crate's parent folder).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("broadcast-cli lives in the workspace")
        .to_path_buf()
}

/// The workspace's `[profile.*]` sections, for a fixture project: with the
/// same profiles, `cargo check` in the workspace's target folder reuses what
/// the CI's checks left there.
fn workspace_profiles() -> String {
    let manifest =
        fs::read_to_string(workspace().join("Cargo.toml")).expect("the workspace's Cargo.toml");
    let mut out = String::new();
    let mut in_profile = false;
    for line in manifest.lines() {
        if line.starts_with('[') {
            in_profile = line.starts_with("[profile.");
        }
        if in_profile {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(
        out.contains("[profile.dev]"),
        "no [profile.dev] in the workspace's Cargo.toml"
    );
    out
}

/// A unique, not yet existing path in the temp folder.
pub fn unique_temp(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::env::temp_dir().join(format!(
        "broadcast-cli-{tag}-{}-{}-{nanos}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

/// A Cargo project depending on this workspace's `broadcast-core` and on
/// `serde` (derive), with `src/lib.rs` declaring `events` and `rooms`.
/// Removed on drop.
pub struct Project {
    pub root: PathBuf,
}

impl Project {
    pub fn new(tag: &str) -> Self {
        let root = unique_temp(tag);
        fs::create_dir_all(root.join("src")).unwrap();
        // Canonical, so paths printed by the binary compare equal.
        let root = root.canonicalize().unwrap();
        let core = workspace().join("broadcast-core");
        let core = core.to_str().expect("UTF-8 workspace path");
        let core = core.replace('\\', "\\\\").replace('"', "\\\"");
        fs::write(
            root.join("Cargo.toml"),
            format!(
                r#"[package]
name = "broadcast-cli-fixture"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
broadcast-core = {{ path = "{core}" }}
serde = {{ version = "1", features = ["derive"] }}

# Its own workspace, whatever folder the temp dir is in.
[workspace]

{profiles}"#,
                profiles = workspace_profiles()
            ),
        )
        .unwrap();
        fs::write(
            root.join("src/lib.rs"),
            "//! A project for cargo-broadcast's tests.\npub mod events;\npub mod rooms;\n",
        )
        .unwrap();
        Project { root }
    }

    /// Runs the binary in the project root.
    pub fn run(&self, args: &[&str]) -> Output {
        run_in(&self.root, args)
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }

    pub fn read(&self, rel: &str) -> String {
        fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).exists()
    }

    /// Every file under the project, relative, sorted.
    pub fn files(&self) -> Vec<String> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
            for entry in fs::read_dir(dir).unwrap() {
                let p = entry.unwrap().path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else {
                    out.push(
                        p.strip_prefix(root)
                            .unwrap()
                            .to_string_lossy()
                            .replace('\\', "/"),
                    );
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.sort();
        out
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run cargo-broadcast")
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the exit status, showing the output otherwise.
#[track_caller]
pub fn assert_code(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "expected exit {code}\nstdout:\n{}\nstderr:\n{}",
        stdout(out),
        stderr(out)
    );
}

/// Runs and asserts success; returns stdout.
#[track_caller]
pub fn ok(project: &Project, args: &[&str]) -> String {
    let out = project.run(args);
    assert_code(&out, 0);
    assert!(out.stderr.is_empty(), "stderr: {}", stderr(&out));
    stdout(&out)
}
