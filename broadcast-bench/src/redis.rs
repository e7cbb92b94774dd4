//! A private `redis-server` on a free loopback port, for one bench
//! invocation. Never 6379: the machine's shared Redis is only used when
//! given explicitly (`--redis-url` / `REDIS_URL`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use crate::{Result, bail};

const FORBIDDEN_PORTS: [u16; 1] = [6379];
const START_TIMEOUT: Duration = Duration::from_secs(10);
const ATTEMPTS: usize = 5;

/// A running `redis-server`; killed, reaped and its directory removed on
/// [`stop`](Self::stop), killed on drop.
pub struct LocalRedis {
    pub port: u16,
    pub pid: u32,
    child: Child,
    dir: PathBuf,
}

/// Whether `redis-server` is on `PATH`.
pub fn available() -> bool {
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("redis-server").is_file())
    })
}

impl LocalRedis {
    pub async fn start() -> Result<LocalRedis> {
        let mut last = String::new();
        for _ in 0..ATTEMPTS {
            match Self::try_start().await {
                Ok(r) => return Ok(r),
                // Another process may take the port between our probe and
                // redis binding it: try another one.
                Err(e) => last = e.to_string(),
            }
        }
        bail!("could not start redis-server after {ATTEMPTS} attempts: {last}")
    }

    async fn try_start() -> Result<LocalRedis> {
        remove_stale_dirs();
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!(
            "broadcast-bench-redis-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir)?;
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .args(["--logfile", "redis.log"])
            .arg("--dir")
            .arg(&dir)
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        crate::procs::die_with_parent(&mut cmd);
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("spawning redis-server (is it installed?): {e}"))?;
        let Some(pid) = child.id() else {
            bail!("redis-server exited at once");
        };
        crate::procs::register(pid);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                crate::procs::unregister(pid);
                let log = std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default();
                let _ = std::fs::remove_dir_all(&dir);
                bail!("redis-server on port {port} exited ({status}): {log}");
            }
            if ping(port).await {
                return Ok(LocalRedis {
                    port,
                    pid,
                    child,
                    dir,
                });
            }
            if Instant::now() > deadline {
                let _ = child.kill().await;
                crate::procs::unregister(pid);
                let _ = std::fs::remove_dir_all(&dir);
                bail!("redis-server on port {port} did not answer PING within {START_TIMEOUT:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn stop(mut self) {
        if self.child.kill().await.is_ok() {
            crate::procs::unregister(self.pid);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for LocalRedis {
    fn drop(&mut self) {
        // `stop` already ran when the directory is gone; otherwise this is an
        // error path: `kill_on_drop` kills the process, we remove its files.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Removes the directories of earlier bench processes that were killed
/// before they could clean up (the pid in the name is gone).
fn remove_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name
            .to_str()
            .and_then(|n| n.strip_prefix("broadcast-bench-redis-"))
        else {
            continue;
        };
        let Some(pid) = rest.split('-').next() else {
            continue;
        };
        if !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn free_port() -> Result<u16> {
    for _ in 0..20 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        if !FORBIDDEN_PORTS.contains(&port) {
            return Ok(port);
        }
    }
    bail!("no free loopback port")
}

async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut buf = [0u8; 16];
        let n = s.read(&mut buf).await.ok()?;
        buf[..n].starts_with(b"+PONG").then_some(())
    };
    tokio::time::timeout(Duration::from_millis(500), attempt)
        .await
        .ok()
        .flatten()
        .is_some()
}

/// A URL for logs: the password, if any, hidden.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(super::redact("redis://u:pw@h:1/0"), "redis://***@h:1/0");
        assert_eq!(super::redact("redis://127.0.0.1:7"), "redis://127.0.0.1:7");
    }
}
