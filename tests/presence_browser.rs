//! The chat page shows who is in a chat, in a real browser (Debian's
//! headless Chromium driven by playwright-core, `tests/ts/browser.mjs`),
//! and updates as people come and go. Two people on two chat servers
//! sharing a harness-started Redis. A screenshot is saved to
//! `target/presence-page.png`.

mod chat_common;

use std::path::Path;

use broadcast_test_support::env::{TempDir, is_ci, loud};
use broadcast_test_support::redis::RedisServer;
use chat_common::{ChatServer, NodeDriver, npm_ready, workspace};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";

async fn op(d: &mut NodeDriver, page: &str, op: &str, extra: Value) -> Value {
    let mut req = json!({"op": op, "page": page});
    if let (Some(r), Some(e)) = (req.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    d.call_ok(req).await
}

async fn wait_text(d: &mut NodeDriver, page: &str, selector: &str, text: &str) -> String {
    let r = op(
        d,
        page,
        "wait_text",
        json!({"selector": selector, "text": text}),
    )
    .await;
    r["text"].as_str().unwrap_or_default().to_owned()
}

async fn enter(d: &mut NodeDriver, page: &str, url: &str, name: &str) {
    op(d, page, "open", json!({"url": url})).await;
    op(d, page, "fill", json!({"selector": "#name", "value": name})).await;
    op(d, page, "click", json!({"selector": "#connect"})).await;
    wait_text(d, page, "#status", &format!("connected as {name}")).await;
    op(d, page, "click", json!({"selector": "[data-join=\"1\"]"})).await;
    wait_text(d, page, "#log", "Joined chat|1.").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chat_page_shows_who_is_here() {
    let test = "the_chat_page_shows_who_is_here";
    if !Path::new(CHROMIUM).exists() {
        assert!(!is_ci(), "{CHROMIUM} is absent in CI");
        loud(&format!(
            "=== SKIPPING {test}: {CHROMIUM} absent (tests/chat_browser.rs installs it) ==="
        ));
        return;
    }
    if !npm_ready(&["playwright-core"], test) {
        return;
    }
    let Some(redis) = RedisServer::start().await.expect("starting redis-server") else {
        return;
    };
    let a = ChatServer::start_with(&[("REDIS_URL", &redis.url())]).await;
    let b = ChatServer::start_with(&[("REDIS_URL", &redis.url())]).await;
    let profile = TempDir::new("presence-browser-profile").expect("a temp dir");
    let profile_dir = profile.path().to_string_lossy().into_owned();
    let mut d = NodeDriver::spawn(
        "browser.mjs",
        &[("CHROMIUM", CHROMIUM), ("USER_DATA_DIR", &profile_dir)],
    );

    // bob, alone in chat 1 on server A.
    enter(&mut d, "bob", &format!("{}/", a.url()), "bob").await;
    let text = wait_text(&mut d, "bob", "#presence", "#1: bob (1)").await;
    assert!(text.contains("#1: bob (1)"), "{text}");

    // alice comes in on server B: both pages list both.
    enter(&mut d, "alice", &format!("{}/", b.url()), "alice").await;
    wait_text(&mut d, "alice", "#presence", "#1: alice, bob (2)").await;
    wait_text(&mut d, "bob", "#presence", "#1: alice, bob (2)").await;
    wait_text(&mut d, "bob", "#log", "alice came into chat|1.").await;

    let shot = workspace().join("target/presence-page.png");
    op(&mut d, "bob", "screenshot", json!({"path": shot})).await;
    assert!(shot.exists(), "no screenshot at {}", shot.display());
    eprintln!("screenshot: {}", shot.display());

    // alice leaves: bob's page follows.
    op(
        &mut d,
        "alice",
        "click",
        json!({"selector": "[data-leave=\"1\"]"}),
    )
    .await;
    wait_text(&mut d, "bob", "#presence", "#1: bob (1)").await;
    wait_text(&mut d, "bob", "#log", "alice left chat|1.").await;
    // And her page no longer lists chat 1.
    wait_text(&mut d, "alice", "#presence", "Join a chat").await;
    // No script errors (the demo serves no /favicon.ico: that 404 is fine).
    let report = op(&mut d, "bob", "report", json!({})).await;
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    assert!(
        errors
            .iter()
            .all(|e| e.as_str().is_some_and(|e| e.contains("404 (Not Found)"))),
        "{report}"
    );
    d.finish().await;
}
