//! Integration tests of the `redis-server` harness: real processes on free
//! loopback ports, never the shared Redis on 6379, driven through fred.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use broadcast_test_support::redis::{
    HarnessError, RedisCluster, RedisServer, cluster_slots, command, slot_owner,
};
use fred::prelude::Value;

fn proc_exists(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[tokio::test]
async fn start_ping_kill_restart_same_port() -> Result<(), HarnessError> {
    let t0 = Instant::now();
    let Some(mut server) = RedisServer::start().await? else {
        return Ok(());
    };
    eprintln!("single server up in {:?}", t0.elapsed());
    let port = server.port();
    assert_ne!(port, 6379);
    assert_eq!(server.url(), format!("redis://127.0.0.1:{port}"));

    assert_eq!(server.command::<String, _>(["PING"]).await?, "PONG");
    server.wait_ready(Duration::from_secs(1)).await?;
    assert_eq!(server.command::<String, _>(["SET", "k", "v"]).await?, "OK");
    assert_eq!(
        command::<String, _>(&server.url(), ["GET", "k"]).await?,
        "v"
    );
    // Persistence is off, as the harness promises.
    let save: Vec<String> = server.command(["CONFIG", "GET", "save"]).await?;
    assert_eq!(save, ["save", ""]);

    let old_pid = server.pid().expect("running");
    server.kill().await?;
    assert_eq!(server.pid(), None);
    assert!(!proc_exists(old_pid), "killed process was reaped");
    assert!(
        server.command::<String, _>(["PING"]).await.is_err(),
        "PING fails after kill"
    );
    assert!(server.wait_ready(Duration::from_millis(200)).await.is_err());
    server.kill().await?; // idempotent

    let t1 = Instant::now();
    server.restart().await?;
    eprintln!("restart on same port in {:?}", t1.elapsed());
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(old_pid));
    assert_eq!(server.command::<String, _>(["PING"]).await?, "PONG");
    assert_eq!(
        server.command::<Option<String>, _>(["GET", "k"]).await?,
        None
    );

    // Restart while running kills the old process first.
    let pid = server.pid().expect("running");
    server.restart().await?;
    assert!(!proc_exists(pid));
    server.wait_ready(Duration::from_secs(1)).await?;
    Ok(())
}

#[tokio::test]
async fn two_servers_get_different_ports() -> Result<(), HarnessError> {
    let (a, b) = tokio::join!(RedisServer::start(), RedisServer::start());
    let (Some(a), Some(b)) = (a?, b?) else {
        return Ok(());
    };
    assert_ne!(a.port(), b.port());
    assert_ne!(a.dir(), b.dir());
    a.command::<(), _>(["SET", "who", "a"]).await?;
    b.command::<(), _>(["SET", "who", "b"]).await?;
    assert_eq!(a.command::<String, _>(["GET", "who"]).await?, "a");
    assert_eq!(b.command::<String, _>(["GET", "who"]).await?, "b");
    Ok(())
}

#[tokio::test]
async fn drop_kills_reaps_and_cleans_up() -> Result<(), HarnessError> {
    let Some(server) = RedisServer::start_with_args(&["--maxmemory", "16mb"]).await? else {
        return Ok(());
    };
    let pid = server.pid().expect("running");
    let port = server.port();
    let dir = server.dir().to_path_buf();
    assert!(proc_exists(pid));
    assert!(dir.join("redis.log").exists());
    let maxmemory: Vec<String> = server.command(["CONFIG", "GET", "maxmemory"]).await?;
    assert_eq!(maxmemory, ["maxmemory", "16777216"]);
    let url = server.url();
    drop(server);
    assert!(!proc_exists(pid), "process {pid} still exists after drop");
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    assert!(
        command::<String, _>(&url, ["PING"]).await.is_err(),
        "{port}"
    );
    Ok(())
}

#[tokio::test]
async fn redis_errors_are_errs_with_the_servers_message() -> Result<(), HarnessError> {
    let Some(server) = RedisServer::start().await? else {
        return Ok(());
    };
    let err = server
        .command::<Value, _>(["NOSUCHCOMMAND"])
        .await
        .expect_err("an unknown command fails");
    assert!(matches!(err, HarnessError::Redis { .. }), "{err}");
    assert!(err.to_string().contains("unknown command"), "{err}");
    let none: [&str; 0] = [];
    assert!(server.command::<Value, _>(none).await.is_err());
    assert!(
        command::<Value, _>("not a url", ["PING"]).await.is_err(),
        "a bad URL is an error, not a panic"
    );
    Ok(())
}

#[tokio::test]
async fn cluster_comes_up_and_routes_keys() -> Result<(), HarnessError> {
    let t0 = Instant::now();
    let Some(mut cluster) = RedisCluster::start().await? else {
        return Ok(());
    };
    eprintln!("3-master cluster up in {:?}", t0.elapsed());
    let nodes = cluster.nodes();
    assert_eq!(nodes.len(), 3);
    let ports: HashSet<u16> = nodes.iter().map(|(_, p)| *p).collect();
    assert_eq!(ports.len(), 3);
    assert!(nodes.iter().all(|(host, _)| host == "127.0.0.1"));
    assert_eq!(
        cluster.urls(),
        nodes
            .iter()
            .map(|(h, p)| format!("redis://{h}:{p}"))
            .collect::<Vec<_>>()
    );

    for server in cluster.servers() {
        let info: String = server.command(["CLUSTER", "INFO"]).await?;
        assert!(info.contains("cluster_state:ok"), "{info}");
    }

    let ranges = cluster_slots(nodes[0].1).await?;
    let covered: i64 = ranges.iter().map(|r| r.last - r.first + 1).sum();
    assert_eq!(covered, 16384);
    let owners: HashSet<u16> = ranges.iter().map(|r| r.port).collect();
    assert_eq!(owners, ports, "every master owns slots");

    // SET keys of different slots directly on their owner; a non-owner MOVEs.
    let mut used_owners = HashSet::new();
    for i in 0..30 {
        let key = format!("key:{i}");
        let slot: i64 = cluster.servers()[0]
            .command(["CLUSTER", "KEYSLOT", key.as_str()])
            .await?;
        let owner = slot_owner(nodes[0].1, &ranges, &key).await?;
        used_owners.insert(owner);
        let url = |port: u16| format!("redis://127.0.0.1:{port}");
        assert_eq!(
            command::<String, _>(&url(owner), ["SET", key.as_str(), "v"]).await?,
            "OK"
        );
        let other = *ports.iter().find(|p| **p != owner).expect("other node");
        // A node that does not own the slot redirects a plain client...
        let moved = command::<Value, _>(&url(other), ["GET", key.as_str()])
            .await
            .expect_err("a non-owner redirects");
        let moved = moved.to_string();
        assert!(
            moved.contains(&format!("MOVED {slot} 127.0.0.1:{owner}")),
            "{moved}"
        );
        // ...which the cluster's client follows.
        assert_eq!(
            cluster.command::<String, _>(["GET", key.as_str()]).await?,
            "v"
        );
    }
    assert_eq!(used_owners, ports, "keys spread over all three masters");

    // A killed and restarted node rejoins with its slots (nodes.conf kept).
    let t1 = Instant::now();
    cluster.servers_mut()[1].kill().await?;
    cluster.servers_mut()[1].restart().await?;
    cluster.wait_ok(Duration::from_secs(30)).await?;
    eprintln!(
        "cluster node restart + cluster_state:ok in {:?}",
        t1.elapsed()
    );
    assert_eq!(
        cluster
            .command::<String, _>(["SET", "after-restart", "1"])
            .await?,
        "OK"
    );
    Ok(())
}

#[tokio::test]
async fn cluster_drop_stops_all_nodes() -> Result<(), HarnessError> {
    let Some(cluster) = RedisCluster::start().await? else {
        return Ok(());
    };
    let pids: Vec<u32> = cluster.servers().iter().filter_map(|s| s.pid()).collect();
    assert_eq!(pids.len(), 3);
    drop(cluster);
    for pid in pids {
        assert!(!proc_exists(pid), "cluster node {pid} survived drop");
    }
    Ok(())
}

#[tokio::test]
async fn startup_failure_reports_log_tail() {
    match RedisServer::start_with_args(&["--no-such-directive", "x"]).await {
        Ok(None) => {}
        Ok(Some(server)) => panic!("started with a bad directive on {}", server.port()),
        Err(err) => {
            let msg = err.to_string();
            assert!(matches!(err, HarnessError::ExitedEarly { .. }), "{msg}");
            assert!(msg.contains("no-such-directive"), "{msg}");
        }
    }
}
