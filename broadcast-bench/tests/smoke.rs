//! Runs `broadcast-e2e` on a tiny scenario (S=2, N=10, R=2, E=20), framework
//! and baseline, against its own redis-server: every event arrives exactly
//! once, the JSON line is well formed, and no process is left behind.

use std::process::Command;
use std::time::Duration;

use broadcast_test_support::env::redis_available;
use serde_json::Value;

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let text = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if text.contains(needle) {
                found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
            }
        }
    }
    found
}

#[test]
fn tiny_scenario_delivers_everything_exactly_once() {
    // Skips loudly without redis-server, fails in CI.
    if !redis_available("tiny_scenario_delivers_everything_exactly_once").unwrap() {
        return;
    }
    let child = Command::new(env!("CARGO_BIN_EXE_broadcast-e2e"))
        .args([
            "--variant",
            "compare",
            "--runs",
            "1",
            "--servers",
            "2",
            "--clients",
            "10",
            "--rooms",
            "2",
            "--events",
            "20",
            "--quiet-ms",
            "2000",
            "--timeout-s",
            "30",
        ])
        // Its own redis-server, never a shared one.
        .env_remove("REDIS_URL")
        .output()
        .expect("run broadcast-e2e");
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert!(
        child.status.success(),
        "broadcast-e2e failed ({}):\n{stderr}",
        child.status
    );
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one JSON line on stdout: {stdout}");
    let summary: Value = serde_json::from_str(lines[0]).expect("stdout is JSON");
    assert_eq!(summary["mode"], "compare");
    let runs = summary["all"].as_array().expect("`all` lists the runs");
    assert_eq!(runs.len(), 2, "{summary}");
    for run in runs {
        let variant = run["variant"].as_str().unwrap_or("?");
        for key in [
            "expected",
            "delivered",
            "lost",
            "duplicated",
            "deliveries_per_s",
            "latency_p50_us",
            "latency_p90_us",
            "latency_p99_us",
            "latency_max_us",
            "cpu_servers_s",
            "cpu_worker_s",
        ] {
            assert!(run[key].is_number(), "{variant}: `{key}` missing in {run}");
        }
        assert_eq!(run["expected"], 10 * 20, "{variant}: {run}");
        assert_eq!(run["delivered"], 10 * 20, "{variant}: {run}");
        assert_eq!(run["lost"], 0, "{variant}: {run}");
        assert_eq!(run["duplicated"], 0, "{variant}: {run}");
        assert_eq!(run["unexpected"], 0, "{variant}: {run}");
        assert_eq!(run["timed_out"], false, "{variant}: {run}");
        assert!(run["deliveries_per_s"].as_f64().unwrap_or(0.0) > 0.0);
        let p50 = run["latency_p50_us"].as_u64().unwrap_or(0);
        let max = run["latency_max_us"].as_u64().unwrap_or(0);
        assert!(p50 > 0 && p50 <= max, "{variant}: {run}");
    }
    assert_eq!(summary["framework"]["zero_lost_and_duplicated"], true);
    assert_eq!(summary["baseline"]["zero_lost_and_duplicated"], true);

    // Every child is gone: the servers and worker carry the bench's pid in
    // their `--prefix`, and the Redis port no longer answers.
    std::thread::sleep(Duration::from_millis(200));
    let pid = child_pid(&stderr);
    assert_ne!(pid, "unknown", "no pid banner on stderr:\n{stderr}");
    let leftovers = processes_with(&format!("bench-{pid}-"));
    assert!(leftovers.is_empty(), "orphans: {leftovers:?}");
    if let Some(port) = redis_port(&stderr) {
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "redis-server on {port} still running"
        );
    }
}

/// The bench's pid, from the `redis ... ; ... pid N` banner on stderr.
fn child_pid(stderr: &str) -> String {
    stderr
        .lines()
        .find_map(|l| l.split("pid=").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or("unknown")
        .to_owned()
}

fn redis_port(stderr: &str) -> Option<u16> {
    stderr
        .lines()
        .find_map(|l| l.split("redis://127.0.0.1:").nth(1))
        .and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|p| p.parse().ok())
}
