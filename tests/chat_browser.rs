//! The chat page (`GET /` of `examples/chat`, run as a process) in a real
//! browser: Debian's headless Chromium driven by playwright-core
//! (`tests/ts/browser.mjs`). A person picks a name, connects, joins chat 1,
//! and sees a message posted over HTTP arrive; a forbidden join shows a
//! clear message; the page's own form posts. A screenshot is saved to
//! `target/chat-page.png`.
//!
//! Recovery: a page whose connection is cut (by a loopback proxy between
//! the browser and the server, which closes every connection and refuses new
//! ones, as a lost network does) while messages are posted shows every one
//! of them once, in order, after it reconnects (`target/chat-page-recovered.png`).
//!
//! Chromium: `/usr/bin/chromium`; when absent it is installed with apt-get
//! (in CI a failure fails the test, elsewhere it skips loudly).

mod chat_common;

use std::path::Path;
use std::process::{Command, Stdio};

use broadcast_test_support::env::{TempDir, is_ci, loud};
use chat_common::proxy::CutProxy;
use chat_common::{ChatServer, NodeDriver, npm_ready, workspace};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

/// Makes `WebSocket.close()` take effect 300 ms late and counts the
/// sockets closed so far in `window.__closed` (after the page's own
/// `onclose` ran).
const DELAYED_CLOSE: &str = "(() => {
    const close = WebSocket.prototype.close;
    window.__closed = 0;
    WebSocket.prototype.close = function (...args) {
        this.addEventListener('close', () => { window.__closed += 1; });
        setTimeout(() => close.apply(this, args), 300);
    };
    return true;
})()";

fn apt_get(args: &[&str]) -> bool {
    Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether Chromium is there, installing it with apt-get when it is not.
fn chromium_ready(test: &str) -> bool {
    if Path::new(CHROMIUM).exists() {
        return true;
    }
    loud(&format!(
        "{test}: {CHROMIUM} absent; apt-get install -y chromium"
    ));
    let installed = apt_get(&["update", "-qq"]) && apt_get(&["install", "-y", "-qq", "chromium"]);
    if installed && Path::new(CHROMIUM).exists() {
        return true;
    }
    assert!(
        !is_ci(),
        "{CHROMIUM} is absent and `apt-get install -y chromium` failed in CI"
    );
    loud(&format!(
        "=== SKIPPING {test}: {CHROMIUM} absent and `apt-get install -y chromium` failed ==="
    ));
    false
}

struct Browser {
    d: NodeDriver,
}

impl Browser {
    async fn op(&mut self, page: &str, op: &str, extra: Value) -> Value {
        let mut req = json!({"op": op, "page": page});
        if let (Some(r), Some(e)) = (req.as_object_mut(), extra.as_object()) {
            r.extend(e.clone());
        }
        self.d.call_ok(req).await
    }

    async fn click(&mut self, page: &str, selector: &str) {
        self.op(page, "click", json!({"selector": selector})).await;
    }

    async fn fill(&mut self, page: &str, selector: &str, value: &str) {
        self.op(page, "fill", json!({"selector": selector, "value": value}))
            .await;
    }

    /// Waits until `selector`'s text contains `text`; returns the text.
    async fn wait_text(&mut self, page: &str, selector: &str, text: &str) -> String {
        let r = self
            .op(
                page,
                "wait_text",
                json!({"selector": selector, "text": text}),
            )
            .await;
        r["text"].as_str().unwrap_or_default().to_string()
    }

    async fn text(&mut self, page: &str, selector: &str) -> String {
        let r = self.op(page, "text", json!({"selector": selector})).await;
        r["text"].as_str().unwrap_or_default().to_string()
    }

    /// The chat log's lines: (class, text).
    async fn lines(&mut self, page: &str) -> Vec<(String, String)> {
        let r = self.op(page, "lines", json!({})).await;
        r["lines"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|l| {
                        (
                            l["class"].as_str().unwrap_or_default().to_string(),
                            l["text"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The log line containing `text`, which must be there exactly once.
    async fn line(&mut self, page: &str, text: &str) -> (String, String) {
        let lines = self.lines(page).await;
        let found: Vec<_> = lines.iter().filter(|(_, t)| t.contains(text)).collect();
        assert_eq!(found.len(), 1, "{page}: `{text}` in {lines:#?}");
        found[0].clone()
    }

    /// Opens `/`, enters `name` and connects.
    async fn connect(&mut self, page: &str, name: &str) {
        self.fill(page, "#name", name).await;
        self.click(page, "#connect").await;
        self.wait_text(page, "#status", &format!("connected as {name}"))
            .await;
    }

    async fn join(&mut self, page: &str, chat: u64) {
        self.click(page, &format!("[data-join=\"{chat}\"]")).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_chats_in_a_real_browser() {
    let test = "a_person_chats_in_a_real_browser";
    if !chromium_ready(test) || !npm_ready(&["playwright-core"], test) {
        return;
    }
    let server = ChatServer::start().await;
    let url = format!("{}/", server.url());
    let profile = TempDir::new("chat-browser-profile").expect("a temp dir");
    let profile_dir = profile.path().to_string_lossy().into_owned();
    let mut b = Browser {
        d: NodeDriver::spawn(
            "browser.mjs",
            &[("CHROMIUM", CHROMIUM), ("USER_DATA_DIR", &profile_dir)],
        ),
    };

    // bob opens the page.
    let opened = b.op("bob", "open", json!({"url": url})).await;
    assert_eq!(opened["status"], json!(200), "{opened}");
    assert_eq!(opened["title"], json!("broadcast chat"), "{opened}");
    assert_eq!(b.text("bob", "#status").await, "not connected");

    // A name the server refuses: the page says so.
    b.fill("bob", "#name", "bob smith").await;
    b.click("bob", "#connect").await;
    b.wait_text("bob", "#log", "Connection refused").await;
    let (class, text) = b.line("bob", "Connection refused").await;
    assert!(class.contains("problem"), "{class} {text}");
    assert!(text.contains("letters or digits"), "{text}");
    assert_eq!(b.text("bob", "#status").await, "refused");

    // A valid name; join chat 1.
    b.connect("bob", "bob").await;
    b.join("bob", 1).await;
    b.wait_text("bob", "#log", "Joined chat|1.").await;

    // Chat 2 is for its members: the page shows a clear refusal.
    b.join("bob", 2).await;
    b.wait_text("bob", "#log", "You may not join chat|2.").await;
    let (class, _) = b.line("bob", "You may not join chat|2.").await;
    assert!(
        class.contains("problem"),
        "the refusal is not marked: {class}"
    );

    // alice, in a second page, joins both chats.
    b.op("alice", "open", json!({"url": url})).await;
    b.connect("alice", "alice").await;
    b.join("alice", 1).await;
    b.wait_text("alice", "#log", "Joined chat|1.").await;
    b.join("alice", 2).await;
    b.wait_text("alice", "#log", "Joined chat|2.").await;

    // Messages posted over HTTP show up live.
    server
        .post_message(2, "carol", "staff meeting at noon")
        .await;
    b.wait_text("alice", "#log", "carol: staff meeting at noon")
        .await;
    server.post_message(1, "carol", "hello from the test").await;
    for page in ["bob", "alice"] {
        b.wait_text(page, "#log", "carol: hello from the test")
            .await;
        let (class, text) = b.line(page, "carol: hello from the test").await;
        assert!(!class.contains("problem"), "{class}");
        assert!(text.starts_with("#1 "), "{text}");
        assert!(!text.contains("Invalid Date"), "sent_at unreadable: {text}");
    }
    // Text is shown as text, never as markup.
    let markup = "<img src=x onerror=\"document.title='owned'\"><i>not italic</i>";
    server.post_message(1, "carol", markup).await;
    b.wait_text("bob", "#log", "<i>not italic</i>").await;
    let html = b
        .op(
            "bob",
            "eval",
            json!({"js": "document.getElementById('log').innerHTML"}),
        )
        .await;
    let html = html["value"].as_str().unwrap_or_default();
    assert!(!html.contains("<img") && !html.contains("<i>"), "{html}");
    assert_eq!(
        b.op("bob", "eval", json!({"js": "document.title"})).await["value"],
        json!("broadcast chat")
    );
    // bob got chat 1's message after chat 2's was sent: had chat 2's
    // reached him, it would be on his page before.
    let bob_lines = b.lines("bob").await;
    assert!(
        !bob_lines.iter().any(|(_, t)| t.contains("staff meeting")),
        "bob sees chat 2: {bob_lines:#?}"
    );

    // alice types in the page's own form: both pages show it.
    b.op(
        "alice",
        "select",
        json!({"selector": "#post select", "value": "1"}),
    )
    .await;
    b.fill("alice", "#post input[name=text]", "typed in the page")
        .await;
    b.click("alice", "#post button").await;
    for page in ["alice", "bob"] {
        b.wait_text(page, "#log", "alice: typed in the page").await;
    }
    // The form refuses what the server refuses, with the server's reason.
    b.op(
        "bob",
        "select",
        json!({"selector": "#post select", "value": "2"}),
    )
    .await;
    b.fill("bob", "#post input[name=text]", "let me in").await;
    b.click("bob", "#post button").await;
    b.wait_text("bob", "#log", "Not posted: bob may not post in chat 2")
        .await;

    // A notification for bob.
    server.notify("bob", "your order shipped").await;
    b.wait_text("bob", "#log", "your order shipped").await;

    // Leaving chat 1: no more chat 1 messages for bob, but his own
    // notifications still arrive (the marker that shows the message did
    // not).
    b.click("bob", "[data-leave=\"1\"]").await;
    b.wait_text("bob", "#log", "Left chat|1.").await;
    server.post_message(1, "carol", "after bob left").await;
    b.wait_text("alice", "#log", "carol: after bob left").await;
    server.notify("bob", "marker").await;
    b.wait_text("bob", "#log", "marker").await;
    let bob_lines = b.lines("bob").await;
    assert!(
        !bob_lines.iter().any(|(_, t)| t.contains("after bob left")),
        "bob still gets chat 1: {bob_lines:#?}"
    );

    // Switching names: connecting again closes the old socket, whose close
    // completes later (delayed here, as on a slow network); the old
    // socket's handlers must not touch the new session.
    b.op("switch", "open", json!({"url": url})).await;
    b.connect("switch", "alice").await;
    b.op("switch", "eval", json!({"js": DELAYED_CLOSE})).await;
    b.connect("switch", "carol").await;
    b.op(
        "switch",
        "wait_true",
        json!({"js": "window.__closed === 1"}),
    )
    .await;
    assert_eq!(b.text("switch", "#status").await, "connected as carol");
    b.join("switch", 2).await;
    b.wait_text("switch", "#log", "Joined chat|2.").await;
    let lines = b.lines("switch").await;
    assert!(
        !lines.iter().any(|(c, _)| c.contains("problem")),
        "{lines:#?}"
    );

    let shot = workspace().join("target/chat-page.png");
    std::fs::create_dir_all(workspace().join("target")).expect("creating target/");
    b.op("bob", "screenshot", json!({"path": shot})).await;
    let shot_alice = workspace().join("target/chat-page-alice.png");
    b.op("alice", "screenshot", json!({"path": shot_alice}))
        .await;
    assert!(
        std::fs::metadata(&shot).is_ok_and(|m| m.len() > 1000),
        "no screenshot at {}",
        shot.display()
    );
    eprintln!("screenshots: {} {}", shot.display(), shot_alice.display());
    eprintln!("bob's page:\n{bob_lines:#?}");

    // No script errors, and nothing loaded from anywhere but the server.
    for page in ["bob", "alice", "switch"] {
        let report = b.op(page, "report", json!({})).await;
        // Chromium logs failed loads to the console: the 403 of bob's
        // refused post (expected) and the 404 of /favicon.ico (the demo
        // has none). Anything else is a problem.
        let expected = |e: &str| {
            e.starts_with("console: Failed to load resource")
                && ((page == "bob" && e.contains("status of 403")) || e.contains("status of 404"))
        };
        let errors: Vec<&str> = report["errors"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let unexpected: Vec<&&str> = errors.iter().filter(|e| !expected(e)).collect();
        assert!(unexpected.is_empty(), "{page}: {report}");
        let requests = report["requests"].as_array().cloned().unwrap_or_default();
        assert!(!requests.is_empty(), "{report}");
        for r in &requests {
            let r = r.as_str().unwrap_or_default();
            assert!(r.starts_with(&url), "{page} loaded {r} (not from {url})");
        }
    }
    b.d.finish().await;
    drop(profile);
}

/// The chat messages on `page`: (room, offset, text), in the log's order.
async fn messages(b: &mut Browser, page: &str) -> Vec<(String, u64, String)> {
    let js = "[...document.querySelectorAll('#log > div[data-offset]')]\
              .map((d) => [d.dataset.room, Number(d.dataset.offset), d.innerText])";
    let v = b.op(page, "eval", json!({ "js": js })).await;
    v["value"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    (
                        m[0].as_str().unwrap_or_default().to_string(),
                        m[1].as_u64().unwrap_or_default(),
                        m[2].as_str().unwrap_or_default().to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_that_loses_its_connection_shows_every_message_once_in_order() {
    let test = "a_page_that_loses_its_connection_shows_every_message_once_in_order";
    if !chromium_ready(test) || !npm_ready(&["playwright-core"], test) {
        return;
    }
    let server = ChatServer::start().await;
    let proxy = CutProxy::start(server.addr).await;
    let url = format!("http://{}/", proxy.addr);
    let profile = TempDir::new("chat-recovery-profile").expect("a temp dir");
    let profile_dir = profile.path().to_string_lossy().into_owned();
    let mut b = Browser {
        d: NodeDriver::spawn(
            "browser.mjs",
            &[("CHROMIUM", CHROMIUM), ("USER_DATA_DIR", &profile_dir)],
        ),
    };
    b.op("dora", "open", json!({ "url": url })).await;
    b.connect("dora", "dora").await;
    b.join("dora", 1).await;
    b.wait_text("dora", "#log", "Joined chat|1.").await;

    let mut sent = Vec::new();
    for i in 1..=3 {
        let text = format!("before the cut {i}");
        server.post_message(1, "carol", &text).await;
        sent.push(text);
    }
    b.wait_text("dora", "#log", "carol: before the cut 3").await;

    // The network goes: the page notices, and messages are posted meanwhile
    // (straight to the server, not through the proxy).
    proxy.set_online(false);
    b.wait_text("dora", "#status", "reconnecting").await;
    for i in 1..=20 {
        let text = format!("while offline {i}");
        server.post_message(1, "carol", &text).await;
        sent.push(text);
    }
    assert_eq!(
        messages(&mut b, "dora").await.len(),
        3,
        "the cut let some through"
    );

    // Back online: socket.io-client reconnects, the helper rejoins with
    // `since`, the server replays the 20.
    proxy.set_online(true);
    b.wait_text("dora", "#log", "Reconnected.").await;
    b.wait_text("dora", "#log", "carol: while offline 20").await;
    b.wait_text("dora", "#log", "Back in chat|1").await;
    for i in 1..=3 {
        let text = format!("after reconnecting {i}");
        server.post_message(1, "carol", &text).await;
        sent.push(text);
    }
    b.wait_text("dora", "#log", "carol: after reconnecting 3")
        .await;

    let shown = messages(&mut b, "dora").await;
    let texts: Vec<String> = shown
        .iter()
        .map(|(_, _, t)| t.split("carol: ").nth(1).unwrap_or(t).to_string())
        .collect();
    assert_eq!(texts, sent, "each message once, in order: {shown:#?}");
    for (i, (room, offset, _)) in shown.iter().enumerate() {
        assert_eq!(
            (room.as_str(), *offset),
            ("chat|1", i as u64 + 1),
            "{shown:#?}"
        );
    }
    let lines = b.lines("dora").await;
    assert!(
        !lines.iter().any(|(c, _)| c.contains("problem")),
        "recovered, yet the page reports a problem: {lines:#?}"
    );
    assert_eq!(b.text("dora", "#status").await, "connected as dora");

    // The whole log in the screenshot, not its scrolled tail.
    let unclip = "document.getElementById('log').style.height = 'auto'; true";
    b.op("dora", "eval", json!({ "js": unclip })).await;
    let shot = workspace().join("target/chat-page-recovered.png");
    std::fs::create_dir_all(workspace().join("target")).expect("creating target/");
    b.op("dora", "screenshot", json!({ "path": shot })).await;
    eprintln!("screenshot: {}", shot.display());

    let report = b.op("dora", "report", json!({})).await;
    let errors: Vec<&str> = report["errors"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    // The demo has no favicon; while offline, Chromium may log the
    // websocket connections it could not open. Nothing else.
    let expected = |e: &&str| {
        (e.starts_with("console: Failed to load resource") && e.contains("status of 404"))
            || (e.starts_with("console: WebSocket connection to") && e.contains("failed"))
    };
    let unexpected: Vec<&&str> = errors.iter().filter(|e| !expected(e)).collect();
    assert!(unexpected.is_empty(), "{report}");
    b.d.finish().await;
    drop(proxy);
    drop(profile);
}
