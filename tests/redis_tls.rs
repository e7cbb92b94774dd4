//! Redis over TLS against a real `redis-server` serving TLS only
//! (`--port 0 --tls-port N`), with certificates made at test time by
//! `openssl`: delivery through two servers and a worker, and every way the
//! connection must fail at startup instead of going plaintext.

mod redis_common;

use std::time::{Duration, Instant};

use broadcast_core::redis::{RedisConfig, RedisError};
use broadcast_test_support::redis::{
    AuthClients, HarnessError, Options, RedisCluster, RedisServer, TestCerts, TlsOptions,
};
use redis_common::{AuditLogged, MessagePosted, Node, QUIET, WAIT, init_tracing};
use serde_json::json;

/// The connect timeout of the failing setups; each must fail within it
/// (plus scheduling slack), not hang.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const SLACK: Duration = Duration::from_secs(1);

/// A TLS-only Redis and its certificates; `None`: skipped (no openssl or
/// redis-server, outside CI).
async fn tls_redis(
    auth_clients: AuthClients,
) -> Result<Option<(RedisServer, TestCerts)>, HarnessError> {
    let Some(certs) = TestCerts::generate()? else {
        return Ok(None);
    };
    let options = Options {
        tls: Some(TlsOptions {
            certs: certs.clone(),
            auth_clients,
        }),
        ..Options::default()
    };
    Ok(RedisServer::start_with(options)
        .await?
        .map(|server| (server, certs)))
}

fn trusted(redis: &RedisServer, certs: &TestCerts) -> RedisConfig {
    RedisConfig::from_url(&redis.url())
        .unwrap()
        .ca_file(certs.ca())
        .client_cert(certs.client_cert(), certs.client_key())
        .connect_timeout(CONNECT_TIMEOUT)
}

/// Both the worker's and the server's setup fail on `config`, each within
/// the connect timeout; returns the worker's error text.
async fn both_fail(config: RedisConfig) -> String {
    let started = Instant::now();
    let worker = broadcast_core::redis::worker(config.clone()).await;
    let elapsed = started.elapsed();
    let err = match worker {
        Ok(_) => panic!("the worker connected with {config:?}"),
        Err(e) => e,
    };
    assert!(matches!(err, RedisError::Connect { .. }), "{err}");
    assert!(
        elapsed < CONNECT_TIMEOUT + SLACK,
        "worker took {elapsed:?}: {err}"
    );

    let started = Instant::now();
    let server = broadcast_core::redis::server(config.clone()).await;
    let elapsed = started.elapsed();
    match server {
        Ok(_) => panic!("the server connected with {config:?}"),
        Err(e) => {
            assert!(matches!(e, RedisError::Connect { .. }), "{e}");
            assert!(
                elapsed < CONNECT_TIMEOUT + SLACK,
                "server took {elapsed:?}: {e}"
            );
        }
    }
    err.to_string()
}

#[tokio::test]
async fn two_servers_and_a_worker_deliver_over_tls() -> Result<(), HarnessError> {
    init_tracing();
    let Some((redis, certs)) = tls_redis(AuthClients::Yes).await? else {
        return Ok(());
    };
    let config = trusted(&redis, &certs);
    assert!(config.is_tls());
    let a = Node::start(config.clone(), &[]).await;
    let b = Node::start(config.clone(), &[]).await;
    let worker = broadcast_core::redis::worker(config).await.unwrap();
    let mut a1 = a.client("/", &["chat|1"]).await;
    let mut b1 = b.client("/", &["chat|1"]).await;
    let mut b2 = b.client("/", &["chat|2"]).await;

    let out = a
        .parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "from A over TLS".into(),
        })
        .await
        .unwrap();
    assert!(out.is_delivered());
    for c in [&mut a1, &mut b1] {
        let got = c.next_event(WAIT).await.unwrap();
        assert_eq!(got.args, [json!({"chat_id": 1, "text": "from A over TLS"})]);
    }
    worker
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "from the worker over TLS".into(),
        })
        .await
        .unwrap();
    for c in [&mut a1, &mut b1] {
        let got = c.next_event(WAIT).await.unwrap();
        assert_eq!(
            got.args,
            [json!({"chat_id": 1, "text": "from the worker over TLS"})]
        );
    }
    for c in [&mut a1, &mut b1, &mut b2] {
        c.expect_silence(QUIET).await.unwrap();
    }
    // The server has no plaintext port: these connections can only be TLS.
    let clients: String = redis.command(["CLIENT", "LIST"]).await?;
    assert!(clients.lines().count() >= 4, "{clients}");
    assert_eq!(worker.connection.stats().published, 1);

    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}

#[tokio::test]
async fn a_wrong_ca_fails_at_startup_saying_so() -> Result<(), HarnessError> {
    init_tracing();
    let Some((redis, certs)) = tls_redis(AuthClients::Optional).await? else {
        return Ok(());
    };
    let Some(other) = TestCerts::generate()? else {
        return Ok(());
    };
    let config = trusted(&redis, &certs).ca_file(other.ca());
    let msg = both_fail(config).await;
    assert!(msg.contains("(TLS)"), "{msg}");
    assert!(msg.to_lowercase().contains("certificate"), "{msg}");

    // Verification is on by default: the system's roots do not know the
    // test CA either.
    let config = RedisConfig::from_url(&redis.url())
        .unwrap()
        .connect_timeout(CONNECT_TIMEOUT);
    let started = Instant::now();
    let err = broadcast_core::redis::worker(config).await.unwrap_err();
    assert!(started.elapsed() < CONNECT_TIMEOUT + SLACK, "{err}");
    Ok(())
}

#[tokio::test]
async fn plaintext_against_the_tls_port_fails_instead_of_falling_back() -> Result<(), HarnessError>
{
    init_tracing();
    let Some((redis, _certs)) = tls_redis(AuthClients::Optional).await? else {
        return Ok(());
    };
    let plain = format!("redis://127.0.0.1:{}", redis.port());
    let config = RedisConfig::from_url(&plain)
        .unwrap()
        .connect_timeout(CONNECT_TIMEOUT);
    assert!(!config.is_tls());
    both_fail(config).await;
    Ok(())
}

#[tokio::test]
async fn a_server_requiring_client_certificates_takes_ours_and_refuses_none()
-> Result<(), HarnessError> {
    init_tracing();
    let Some((redis, certs)) = tls_redis(AuthClients::Yes).await? else {
        return Ok(());
    };
    let with_cert = broadcast_core::redis::worker(trusted(&redis, &certs))
        .await
        .unwrap();
    with_cert
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 7,
            text: "signed".into(),
        })
        .await
        .unwrap();
    with_cert.connection.shutdown().await.unwrap();

    let without = RedisConfig::from_url(&redis.url())
        .unwrap()
        .ca_file(certs.ca())
        .connect_timeout(CONNECT_TIMEOUT);
    both_fail(without).await;
    Ok(())
}

#[tokio::test]
async fn unusable_tls_files_fail_before_connecting() -> Result<(), HarnessError> {
    init_tracing();
    let Some((redis, certs)) = tls_redis(AuthClients::Optional).await? else {
        return Ok(());
    };
    // A key that is not a key: refused by name, for the worker and the server.
    let config = trusted(&redis, &certs).client_cert(certs.client_cert(), certs.ca());
    for err in [
        broadcast_core::redis::worker(config.clone())
            .await
            .unwrap_err(),
        broadcast_core::redis::server(config).await.unwrap_err(),
    ] {
        assert!(matches!(err, RedisError::Tls { .. }), "{err}");
        assert!(err.to_string().contains("ca.crt"), "{err}");
    }
    Ok(())
}

#[tokio::test]
async fn a_tls_cluster_delivers_from_its_nodes_or_a_rediss_cluster_url() -> Result<(), HarnessError>
{
    init_tracing();
    let Some(certs) = TestCerts::generate()? else {
        return Ok(());
    };
    let tls = TlsOptions {
        certs: certs.clone(),
        auth_clients: AuthClients::Yes,
    };
    let Some(cluster) = RedisCluster::start_tls(tls).await? else {
        return Ok(());
    };
    let secure = |c: RedisConfig| {
        c.ca_file(certs.ca())
            .client_cert(certs.client_cert(), certs.client_key())
    };
    let from_nodes = || secure(RedisConfig::from_nodes(cluster.urls()).unwrap());
    assert!(from_nodes().is_tls() && from_nodes().is_cluster());
    let first = cluster.nodes()[0].1;
    let url = format!("rediss-cluster://127.0.0.1:{first}");
    let from_url = secure(RedisConfig::from_url(&url).unwrap());
    assert!(from_url.is_tls() && from_url.is_cluster());

    let a = Node::start(from_nodes(), &[]).await;
    let b = Node::start(from_url.clone(), &[]).await;
    let worker = broadcast_core::redis::worker(from_url).await.unwrap();
    let mut a1 = a.client("/", &["chat|1"]).await;
    let mut b1 = b.client("/", &["chat|1"]).await;
    let mut b_admin = b.client("/admin", &["chat|1"]).await;

    a.parts
        .broadcaster
        .broadcast(MessagePosted {
            chat_id: 1,
            text: "cluster over TLS".into(),
        })
        .await
        .unwrap();
    for c in [&mut a1, &mut b1] {
        let got = c.next_event(WAIT).await.unwrap();
        assert_eq!(
            got.args,
            [json!({"chat_id": 1, "text": "cluster over TLS"})]
        );
    }
    worker
        .broadcaster
        .broadcast(AuditLogged { chat_id: 1 })
        .await
        .unwrap();
    let got = b_admin.next_event(WAIT).await.unwrap();
    assert_eq!(got.event, "audit_logged");
    for c in [&mut a1, &mut b1, &mut b_admin] {
        c.expect_silence(QUIET).await.unwrap();
    }

    worker.connection.shutdown().await.unwrap();
    a.shutdown().await;
    b.shutdown().await;
    Ok(())
}
