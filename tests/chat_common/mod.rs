//! Shared by the `chat_*` tests: the chat demo and the worker run as child
//! processes (the binaries `cargo test` builds from `examples/`), a minimal
//! HTTP/1.1 client, and a driver for the node scripts in `tests/ts/` that
//! speak JSON lines on stdin/stdout.
//!
//! Every process started here is killed and reaped when its handle drops
//! (node drivers with their whole process group, so a browser goes too),
//! and every temp dir is removed.
#![allow(dead_code)]

pub mod proxy;

use std::collections::{HashMap, VecDeque};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use broadcast_test_support::env::{TempDir, is_ci, loud};
use broadcast_test_support::ports::free_port;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Upper bound for anything that should happen (never a measured duration).
pub const WAIT: Duration = Duration::from_secs(20);
/// Upper bound for a chat server to answer `GET /chats` after being spawned.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root (where `Cargo.toml` is).
pub fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/ts`: the npm project with the node scripts.
pub fn ts_dir() -> PathBuf {
    workspace().join("tests/ts")
}

// ---------------------------------------------------------------------------
// Example binaries
// ---------------------------------------------------------------------------

/// Path of an example binary built next to this test:
/// `<target>/<profile>/deps/<test>` -> `<target>/<profile>/examples/<name>`.
///
/// `cargo test` builds the examples, but `cargo test --test chat_...` does
/// not, and a stale binary would test old code: so the first call in a test
/// process runs `cargo build --workspace --examples` into the same target dir
/// (a no-op after `cargo test --workspace`, whose feature set `--workspace`
/// keeps).
pub fn example_bin(name: &str) -> PathBuf {
    static BUILT: Mutex<bool> = Mutex::new(false);
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("test binary has a parent dir");
    let profile_dir = deps.parent().expect("deps dir has a parent");
    let bin = profile_dir.join("examples").join(name);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !*built {
        let target = profile_dir.parent().expect("profile dir has a parent");
        let profile = profile_dir
            .file_name()
            .and_then(|p| p.to_str())
            .expect("profile dir name");
        let mut cmd = broadcast_test_support::env::cargo();
        // The profile `cargo test` builds with (`test`, or `bench` with
        // `--release`): the dependencies it built are then fresh, where
        // `dev` would rebuild them and `cargo test` rebuild them back.
        let profile = if profile == "release" {
            "bench"
        } else {
            "test"
        };
        cmd.args(["build", "--quiet", "--workspace", "--examples"])
            .args(["--profile", profile])
            .env("CARGO_TARGET_DIR", target)
            .current_dir(workspace());
        let status = cmd.status().expect("running cargo build --examples");
        assert!(
            status.success(),
            "cargo build --workspace --examples: {status}"
        );
        *built = true;
    }
    assert!(
        bin.exists(),
        "{} missing after building the examples",
        bin.display()
    );
    bin
}

// ---------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------

/// A child process killed (with its process group when it leads one) and
/// reaped on drop.
#[derive(Debug)]
pub struct Proc {
    child: Option<Child>,
    group: bool,
}

impl Proc {
    pub fn new(child: Child, group: bool) -> Proc {
        Proc {
            child: Some(child),
            group,
        }
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// `Some(status)` once the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits up to `timeout` for the process to exit by itself; kills it
    /// (and its group) past that and returns `None`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.try_wait() {
                self.kill_group();
                self.child = None;
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.kill();
        None
    }

    fn kill_group(&self) {
        if self.group
            && let Some(child) = &self.child
        {
            // The group's leader is the child: its pid is the group id.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
        }
    }

    pub fn kill(&mut self) {
        self.kill_group();
        let pgid = self.child.as_ref().map(Child::id);
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Let the rest of the group (a browser's processes) be gone before
        // the caller removes the directories they write to.
        if let (true, Some(pgid)) = (self.group, pgid) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline
                && Command::new("kill")
                    .args(["-0", "--", &format!("-{pgid}")])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------
// The chat server
// ---------------------------------------------------------------------------

/// `examples/chat` running as a child process on a free loopback port.
pub struct ChatServer {
    pub addr: SocketAddr,
    proc: Proc,
    log: PathBuf,
    _dir: TempDir,
}

impl ChatServer {
    /// In-memory chat server.
    pub async fn start() -> ChatServer {
        Self::start_with(&[]).await
    }

    /// Chat server with extra environment (e.g. `REDIS_URL`, or `PORT` to
    /// take the port of a server that stopped); waits until it answers
    /// `GET /chats`.
    pub async fn start_with(envs: &[(&str, &str)]) -> ChatServer {
        let bin = example_bin("chat");
        let mut last = String::new();
        let given_port = envs
            .iter()
            .find(|(k, _)| *k == "PORT")
            .map(|(_, p)| p.parse::<u16>().expect("PORT is a port number"));
        // A port picked by binding :0 can be taken before the child binds it.
        for _ in 0..3 {
            let port = given_port.unwrap_or_else(|| free_port().expect("a free loopback port"));
            let dir = TempDir::new("chat-server").expect("a temp dir");
            let log = dir.path().join("chat.log");
            let out = File::create(&log).expect("creating the chat log");
            let err = out.try_clone().expect("cloning the log handle");
            let mut cmd = Command::new(&bin);
            cmd.env("PORT", port.to_string())
                .env_remove("HOST")
                .env_remove("REDIS_URL")
                .env_remove("DATABASE_URL")
                .env("RUST_LOG", "info,socketioxide=warn")
                .stdin(Stdio::null())
                .stdout(out)
                .stderr(err);
            for (k, v) in envs {
                cmd.env(k, v);
            }
            let child = cmd
                .spawn()
                .unwrap_or_else(|e| panic!("spawning {}: {e}", bin.display()));
            let mut server = ChatServer {
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                proc: Proc::new(child, false),
                log,
                _dir: dir,
            };
            match server.await_ready().await {
                Ok(()) => return server,
                Err(e) => {
                    last = e;
                    if !last.contains("Address already in use") {
                        break;
                    }
                }
            }
        }
        panic!("chat server did not start: {last}");
    }

    async fn await_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.proc.try_wait() {
                return Err(format!("exited ({status}); log:\n{}", self.log_text()));
            }
            if let Ok(r) = http(self.addr, "GET", "/chats", &[], b"").await
                && r.status == 200
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer to GET /chats on {} within {START_TIMEOUT:?}; log:\n{}",
                    self.addr,
                    self.log_text()
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the server with SIGKILL: no goodbye to Redis or its clients.
    pub fn kill(&mut self) {
        self.proc.kill();
    }

    /// What the server printed so far.
    pub fn log_text(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Posts JSON to `path`.
    pub async fn post(&self, path: &str, body: &Value) -> HttpResponse {
        self.post_raw(path, &[], body.to_string().as_bytes()).await
    }

    /// Posts raw bytes as `application/json` with extra headers (a
    /// `Content-Type` among them replaces it; an empty one sends none).
    pub async fn post_raw(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        http(self.addr, "POST", path, headers, body)
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}\nserver log:\n{}", self.log_text()))
    }

    pub async fn get(&self, path: &str) -> HttpResponse {
        http(self.addr, "GET", path, &[], b"")
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}\nserver log:\n{}", self.log_text()))
    }

    /// Posts a chat message and checks the 202 reply.
    pub async fn post_message(&self, chat_id: u64, author: &str, text: &str) {
        self.post_message_with(chat_id, author, text, &[]).await;
    }

    pub async fn post_message_with(
        &self,
        chat_id: u64,
        author: &str,
        text: &str,
        headers: &[(&str, &str)],
    ) {
        let body = json!({"author": author, "text": text}).to_string();
        let r = self
            .post_raw(
                &format!("/chats/{chat_id}/messages"),
                headers,
                body.as_bytes(),
            )
            .await;
        assert_eq!(r.status, 202, "POST chat {chat_id}: {r:?}");
        assert_eq!(
            r.json(),
            json!({"event": "message_posted", "rooms": [format!("chat|{chat_id}")]}),
            "{r:?}"
        );
    }

    /// Sends a notification and checks the 202 reply.
    pub async fn notify(&self, user: &str, text: &str) {
        let r = self
            .post(&format!("/users/{user}/notify"), &json!({"text": text}))
            .await;
        assert_eq!(r.status, 202, "notify {user}: {r:?}");
        assert_eq!(
            r.json(),
            json!({"event": "user_notified", "rooms": [format!("user|{user}")]}),
            "{r:?}"
        );
    }
}

// ---------------------------------------------------------------------------
// HTTP/1.1
// ---------------------------------------------------------------------------

/// A response read to the end.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON (panics with the response when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self:?}"))
    }
}

/// One request with `Connection: close` (JSON content type when there is a
/// body), bounded by [`WAIT`].
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    tokio::time::timeout(WAIT, http_inner(addr, method, path, headers, body))
        .await
        .map_err(|_| format!("{method} {path}: no complete response within {WAIT:?}"))?
}

async fn http_inner(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<HttpResponse, String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    // A `Content-Type` among `headers` replaces the JSON default; an empty
    // one sends none.
    let own_type = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
    if !body.is_empty() || method == "POST" {
        if !own_type {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        if !v.is_empty() {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    stream
        .write_all(&bytes)
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .await
        .map_err(|e| format!("read: {e}"))?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no end of headers in {text:?}"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    let body = if chunked {
        dechunk(rest)?
    } else {
        rest.to_string()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut s: &str) -> Result<String, String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s
            .split_once("\r\n")
            .ok_or_else(|| format!("bad chunk in {s:?}"))?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|e| format!("bad chunk size {size:?}: {e}"))?;
        if size == 0 {
            return Ok(out);
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| format!("short chunk in {rest:?}"))?;
        out.push_str(chunk);
        s = rest.get(size + 2..).unwrap_or("");
    }
}

// ---------------------------------------------------------------------------
// RFC 3339
// ---------------------------------------------------------------------------

/// Seconds since the Unix epoch of an RFC 3339 date-time
/// (`YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`), `None` when malformed.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.is_empty() || !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (y, mo, d) = (digits(0..4)?, digits(5..7)?, digits(8..10)?);
    let (h, mi, sec) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = digits(i + 1..i + 3)? * 3600 + digits(i + 4..i + 6)? * 60;
            if *sign == b'+' { off } else { -off }
        }
        _ => return None,
    };
    // Days from civil (Howard Hinnant), independent of the server's code.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + sec - offset)
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Checks a `message_posted` payload: exactly these fields, and `sent_at`
/// an RFC 3339 time between `not_before` and now (whole seconds).
pub fn assert_message(payload: &Value, chat_id: u64, author: &str, text: &str, not_before: i64) {
    let obj = payload
        .as_object()
        .unwrap_or_else(|| panic!("message_posted payload is not an object: {payload}"));
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["author", "chat_id", "sent_at", "text"], "{payload}");
    assert_eq!(payload["chat_id"], json!(chat_id), "{payload}");
    assert_eq!(payload["author"], json!(author), "{payload}");
    assert_eq!(payload["text"], json!(text), "{payload}");
    let sent_at = payload["sent_at"].as_str().unwrap_or_default();
    let t = parse_rfc3339(sent_at)
        .unwrap_or_else(|| panic!("sent_at is not RFC 3339: {sent_at:?} in {payload}"));
    let now = unix_now();
    assert!(
        (not_before..=now).contains(&t),
        "sent_at {sent_at} ({t}) is not between {not_before} and {now}"
    );
}

// ---------------------------------------------------------------------------
// npm and node
// ---------------------------------------------------------------------------

/// Makes sure `tests/ts/node_modules` has `packages` (runs `npm ci` from the
/// committed lockfile when one is missing). `false`: not available outside
/// CI, after a loud skip line; in CI a failure panics.
pub fn npm_ready(packages: &[&str], test: &str) -> bool {
    static LOCK: Mutex<()> = Mutex::new(());
    let _guard = LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = ts_dir();
    let missing = |p: &&str| {
        !dir.join("node_modules")
            .join(p)
            .join("package.json")
            .exists()
    };
    if !packages.iter().any(missing) {
        return true;
    }
    loud(&format!("{test}: running `npm ci` in {}", dir.display()));
    let res = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .status();
    let ok = matches!(&res, Ok(s) if s.success()) && !packages.iter().any(missing);
    if !ok {
        assert!(
            !is_ci(),
            "npm ci in {} failed in CI: {res:?}",
            dir.display()
        );
        loud(&format!(
            "=== SKIPPING {test}: node/npm not available or `npm ci` failed ({res:?}) ==="
        ));
    }
    ok
}

/// A node script under `tests/ts/` driven over JSON lines: each request
/// `{"id": n, "op": ..., ...}` on its stdin is answered by a line with the
/// same `id`; lines with a `client` and an `event` are events observed by
/// that client, queued in order per client.
pub struct NodeDriver {
    name: String,
    proc: Proc,
    stdin: Option<ChildStdin>,
    lines: mpsc::UnboundedReceiver<String>,
    stderr: Arc<Mutex<String>>,
    events: HashMap<String, VecDeque<Event>>,
    replies: HashMap<u64, Value>,
    transcript: Vec<String>,
    next_id: u64,
}

/// `v` without its `position` (a history room's, in join acks and
/// `joined`), after checking its shape: `{"offset": <int>, "epoch": <str>}`.
pub fn strip_position(mut v: Value) -> Value {
    if let Some(obj) = v.as_object_mut()
        && let Some(p) = obj.remove("position")
    {
        assert!(
            p["offset"].is_u64()
                && p["epoch"].is_string()
                && p.as_object().map(|o| o.len()) == Some(2),
            "a position is {{offset, epoch}}: {p}"
        );
    }
    v
}

/// One event a client observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub event: String,
    pub args: Vec<Value>,
}

impl Event {
    /// The first argument.
    pub fn data(&self) -> &Value {
        static NULL: OnceLock<Value> = OnceLock::new();
        self.args
            .first()
            .unwrap_or_else(|| NULL.get_or_init(|| Value::Null))
    }
}

impl NodeDriver {
    /// Starts `node tests/ts/<script>` in its own process group.
    pub fn spawn(script: &str, envs: &[(&str, &str)]) -> NodeDriver {
        let path = ts_dir().join(script);
        let mut cmd = Command::new("node");
        cmd.arg(&path)
            .current_dir(ts_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning node {}: {e}", path.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr_pipe = child.stderr.take().expect("piped stderr");
        let (tx, rx) = mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr_pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.push_str(&line);
                s.push('\n');
            }
        });
        NodeDriver {
            name: script.to_string(),
            proc: Proc::new(child, true),
            stdin,
            lines: rx,
            stderr,
            events: HashMap::new(),
            replies: HashMap::new(),
            transcript: Vec::new(),
            next_id: 0,
        }
    }

    /// What went on so far, for failure messages.
    pub fn context(&self) -> String {
        let tail: Vec<&str> = self
            .transcript
            .iter()
            .rev()
            .take(60)
            .rev()
            .map(String::as_str)
            .collect();
        format!(
            "--- {} transcript (last {} lines) ---\n{}\n--- stderr ---\n{}",
            self.name,
            tail.len(),
            tail.join("\n"),
            self.stderr
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        )
    }

    /// Reads one line from the script and files it; `false` on timeout.
    async fn pump(&mut self, deadline: tokio::time::Instant) -> bool {
        let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
            Ok(Some(line)) => line,
            Ok(None) => {
                // stdout closed: give stderr a moment to be collected.
                let status = self.proc.wait_exit(Duration::from_secs(5)).await;
                panic!(
                    "{} exited ({status:?}) unexpectedly\n{}",
                    self.name,
                    self.context()
                );
            }
            Err(_) => return false,
        };
        self.transcript.push(line.clone());
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
            panic!(
                "{} printed a line that is not JSON ({e}): {line}\n{}",
                self.name,
                self.context()
            )
        });
        if let Some(fatal) = v.get("fatal") {
            panic!("{} failed: {fatal}\n{}", self.name, self.context());
        }
        if let Some(id) = v.get("id").and_then(Value::as_u64) {
            self.replies.insert(id, v);
        } else if let (Some(client), Some(event)) = (
            v.get("client").and_then(Value::as_str),
            v.get("event").and_then(Value::as_str),
        ) {
            let args = v
                .get("args")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            self.events
                .entry(client.to_string())
                .or_default()
                .push_back(Event {
                    event: event.to_string(),
                    args,
                });
        }
        true
    }

    /// Sends one request and waits (up to `timeout`) for its reply.
    pub async fn call_within(&mut self, mut req: Value, timeout: Duration) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        req["id"] = json!(id);
        let line = format!("{req}\n");
        self.transcript.push(format!("> {req}"));
        let stdin = self.stdin.as_mut().expect("stdin open");
        if let Err(e) = stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.flush())
        {
            panic!("writing to {}: {e}\n{}", self.name, self.context());
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(reply) = self.replies.remove(&id) {
                return reply;
            }
            if !self.pump(deadline).await {
                panic!(
                    "{} did not answer {req} within {timeout:?}\n{}",
                    self.name,
                    self.context()
                );
            }
        }
    }

    pub async fn call(&mut self, req: Value) -> Value {
        self.call_within(req, WAIT).await
    }

    /// Like [`call`](Self::call), and the reply must say `"ok": true`.
    pub async fn call_ok(&mut self, req: Value) -> Value {
        let reply = self.call(req.clone()).await;
        assert_eq!(
            reply["ok"],
            json!(true),
            "{req} failed: {reply}\n{}",
            self.context()
        );
        reply
    }

    /// The next event `client` observed, in order (waits up to [`WAIT`]).
    pub async fn next_event(&mut self, client: &str) -> Event {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(ev) = self.events.get_mut(client).and_then(VecDeque::pop_front) {
                return ev;
            }
            if !self.pump(deadline).await {
                panic!(
                    "{client} observed no event within {WAIT:?}\n{}",
                    self.context()
                );
            }
        }
    }

    /// The next event of `client`, which must be named `name`; returns its
    /// first argument.
    pub async fn expect_event(&mut self, client: &str, name: &str) -> Value {
        let ev = self.next_event(client).await;
        assert_eq!(
            ev.event,
            name,
            "{client}: expected `{name}` next, got {ev:?}\n{}",
            self.context()
        );
        // Events of rooms that keep history carry their position second.
        let positioned = ev.args.len() == 2 && ev.args[1].get("offset").is_some();
        assert!(ev.args.len() == 1 || positioned, "{client}: {ev:?}");
        ev.data().clone()
    }

    /// Every event `client` observes within `dur` (and those already
    /// queued), taken from its queue.
    pub async fn events_within(&mut self, client: &str, dur: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + dur;
        while self.pump(deadline).await {}
        self.events
            .get_mut(client)
            .map(|q| q.drain(..).collect())
            .unwrap_or_default()
    }

    /// Events of `client` already read and not yet taken.
    pub fn queued(&self, client: &str) -> Vec<Event> {
        self.events
            .get(client)
            .map(|q| q.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Asks the script to finish (`{"op": "exit"}`) and checks it exits 0.
    pub async fn finish(mut self) {
        let _ = self.call(json!({"op": "exit"})).await;
        self.stdin = None;
        let status = self.proc.wait_exit(WAIT).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "{} exit status {status:?}\n{}",
            self.name,
            self.context()
        );
    }
}

impl Drop for NodeDriver {
    fn drop(&mut self) {
        // Closing stdin asks the script to close what it opened (a browser
        // and its temp files) and exit; it is killed if it does not.
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.proc.try_wait().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        self.proc.kill();
    }
}
