//! The README's Redis ACL recipe, tested: servers and a worker that may use
//! only the prefix's channels and the commands the framework needs deliver
//! as usual, and a user without those channels cannot publish on them.

mod redis_common;

use broadcast_core::redis::RedisConfig;
use broadcast_core::redis::fred::interfaces::{ClientLike, PubsubInterface};
use broadcast_core::redis::fred::prelude::{Builder, Config};
use broadcast_core::redis::fred::types::Value as RedisValue;
use broadcast_test_support::redis::{HarnessError, RedisServer};
use redis_common::{MessagePosted, Node, WAIT, init_tracing};
use serde_json::json;

/// The commands of the recipe, found by running with `-@all` and reading
/// `ACL LOG`: the sharded pub/sub the adapter uses, PUBSUB SHARDNUMSUB
/// (server count), `INFO` and `CLIENT ID` (fred asks at connect), `PING`
/// (fred's health checks), and the cluster slot map (cluster only, not
/// exercised here). `HELLO`, `AUTH` and `QUIT` need no permission. Keep in
/// step with the README.
const COMMANDS: &str = "-@all +spublish +ssubscribe +sunsubscribe +pubsub|shardnumsub \
                        +info +client|id +ping +cluster|slots +cluster|shards";

/// `ACL SETUSER <user> on ><password> resetchannels &<prefix>-* resetkeys <COMMANDS>`.
async fn set_user(redis: &RedisServer, user: &str, channels: &[&str]) -> Result<(), HarnessError> {
    let mut args = vec![
        "ACL".to_owned(),
        "SETUSER".to_owned(),
        user.to_owned(),
        "reset".to_owned(),
        "on".to_owned(),
        format!(">{user}-secret"),
        "resetchannels".to_owned(),
    ];
    args.extend(channels.iter().map(|c| format!("&{c}")));
    args.extend(COMMANDS.split_whitespace().map(str::to_owned));
    let _: String = redis.command(args).await?;
    Ok(())
}

fn url(redis: &RedisServer, user: &str) -> String {
    format!("redis://{user}:{user}-secret@127.0.0.1:{}", redis.port())
}

/// What Redis refused, for the failure message.
async fn acl_log(redis: &RedisServer) -> String {
    match redis.command::<RedisValue, _>(["ACL", "LOG"]).await {
        Ok(log) => format!("{log:?}"),
        Err(e) => format!("ACL LOG failed: {e}"),
    }
}

async fn delivers_with(redis: &RedisServer, user: &str, prefix: &str) {
    let config = || {
        RedisConfig::from_url(&url(redis, user))
            .expect("url")
            .prefix(prefix.to_owned())
    };
    let a = Node::start(config(), &[]).await;
    let b = Node::start(config(), &[]).await;
    let worker = broadcast_core::redis::worker(config())
        .await
        .expect("worker connects");
    let mut client = b.client("/", &["chat|1"]).await;
    for (from, text) in [
        (&a.parts.broadcaster, "from A"),
        (&worker.broadcaster, "from the worker"),
    ] {
        let sent = from
            .broadcast(MessagePosted {
                chat_id: 1,
                text: text.into(),
            })
            .await;
        if let Err(e) = sent {
            panic!("{e}; ACL LOG: {}", acl_log(redis).await);
        }
        let got = client
            .next_event(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{text} did not arrive: {e}"));
        assert_eq!(got.args, [json!({"chat_id": 1, "text": text})]);
    }
    worker.connection.shutdown().await.expect("worker shutdown");
    a.shutdown().await;
    b.shutdown().await;
    let refused = acl_log(redis).await;
    assert_eq!(
        refused, "Array([])",
        "the recipe misses something: {refused}"
    );
}

#[tokio::test]
async fn servers_and_a_worker_deliver_as_a_user_limited_to_the_prefix() -> Result<(), HarnessError>
{
    init_tracing();
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    set_user(&redis, "app", &["socket.io-*"]).await?;
    set_user(&redis, "shop", &["shop-*"]).await?;
    delivers_with(&redis, "app", "socket.io").await;
    delivers_with(&redis, "shop", "shop").await;
    Ok(())
}

#[tokio::test]
async fn a_user_without_the_channels_cannot_publish_on_them() -> Result<(), HarnessError> {
    init_tracing();
    let Some(redis) = RedisServer::start().await? else {
        return Ok(());
    };
    // Same commands, another application's channels.
    set_user(&redis, "other", &["other-*"]).await?;
    let client = Builder::from_config(Config::from_url(&url(&redis, "other")).expect("url"))
        .build()
        .expect("client");
    client.init().await.expect("connects");
    for channel in ["socket.io-request#/#", "shop-request#/#"] {
        let refused = client
            .spublish::<i64, _, _>(channel, "x")
            .await
            .expect_err("SPUBLISH on another prefix's channel is refused");
        assert!(refused.to_string().contains("NOPERM"), "{refused}");
    }
    let allowed: i64 = client
        .spublish("other-request#/#", "x")
        .await
        .expect("own channel");
    assert_eq!(allowed, 0);
    client.quit().await.expect("quit");

    // And the framework says so: a worker of the default prefix as that user fails.
    let worker =
        broadcast_core::redis::worker(RedisConfig::from_url(&url(&redis, "other")).expect("url"))
            .await;
    if let Ok(worker) = worker {
        let sent = worker
            .broadcaster
            .broadcast(MessagePosted {
                chat_id: 1,
                text: "x".into(),
            })
            .await;
        let error = sent.expect_err("publishing without the channel permission fails");
        println!("worker without permission: {error}");
        worker.connection.shutdown().await.expect("shutdown");
    }
    Ok(())
}
