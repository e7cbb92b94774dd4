//! Integration tests of the `redis-server` test harness: real processes on
//! free loopback ports, never the shared Redis on 6379.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use support::redis_server::{HarnessError, RedisCluster, RedisServer, RespReply, redis_cmd};

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

    assert_eq!(
        redis_cmd(port, &[b"PING"]).await?,
        RespReply::Simple("PONG".into())
    );
    server.wait_ready(Duration::from_secs(1)).await?;
    assert_eq!(
        redis_cmd(port, &[b"SET", b"k", b"v"]).await?,
        RespReply::Simple("OK".into())
    );
    assert_eq!(
        redis_cmd(port, &[b"GET", b"k"]).await?,
        RespReply::Bulk(b"v".to_vec())
    );
    // Persistence is off, as the harness promises.
    let save = redis_cmd(port, &[b"CONFIG", b"GET", b"save"]).await?;
    assert_eq!(
        save,
        RespReply::Array(vec![
            RespReply::Bulk(b"save".to_vec()),
            RespReply::Bulk(Vec::new())
        ])
    );

    let old_pid = server.pid().expect("running");
    server.kill().await?;
    assert_eq!(server.pid(), None);
    assert!(!proc_exists(old_pid), "killed process was reaped");
    assert!(
        redis_cmd(port, &[b"PING"]).await.is_err(),
        "PING fails after kill"
    );
    assert!(server.wait_ready(Duration::from_millis(200)).await.is_err());
    server.kill().await?; // idempotent

    let t1 = Instant::now();
    server.restart().await?;
    eprintln!("restart on same port in {:?}", t1.elapsed());
    assert_eq!(server.port(), port);
    assert_ne!(server.pid(), Some(old_pid));
    assert_eq!(
        redis_cmd(port, &[b"PING"]).await?,
        RespReply::Simple("PONG".into())
    );
    assert_eq!(redis_cmd(port, &[b"GET", b"k"]).await?, RespReply::Nil);

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
    redis_cmd(a.port(), &[b"SET", b"who", b"a"]).await?;
    redis_cmd(b.port(), &[b"SET", b"who", b"b"]).await?;
    assert_eq!(
        redis_cmd(a.port(), &[b"GET", b"who"]).await?,
        RespReply::Bulk(b"a".to_vec())
    );
    assert_eq!(
        redis_cmd(b.port(), &[b"GET", b"who"]).await?,
        RespReply::Bulk(b"b".to_vec())
    );
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
    let maxmemory = redis_cmd(port, &[b"CONFIG", b"GET", b"maxmemory"]).await?;
    assert_eq!(
        maxmemory,
        RespReply::Array(vec![
            RespReply::Bulk(b"maxmemory".to_vec()),
            RespReply::Bulk(b"16777216".to_vec())
        ])
    );
    drop(server);
    assert!(!proc_exists(pid), "process {pid} still exists after drop");
    assert!(!dir.exists(), "temp dir {} left behind", dir.display());
    assert!(redis_cmd(port, &[b"PING"]).await.is_err());
    Ok(())
}

#[tokio::test]
async fn redis_errors_are_replies_not_errs() -> Result<(), HarnessError> {
    let Some(server) = RedisServer::start().await? else {
        return Ok(());
    };
    let reply = redis_cmd(server.port(), &[b"NOSUCHCOMMAND"]).await?;
    assert!(reply.is_error(), "{reply:?}");
    assert!(redis_cmd(server.port(), &[]).await.is_err());
    Ok(())
}

fn slot_ranges(slots: &RespReply) -> Vec<(i64, i64, u16)> {
    let RespReply::Array(ranges) = slots else {
        panic!("CLUSTER SLOTS: {slots:?}");
    };
    ranges
        .iter()
        .map(|range| match range {
            RespReply::Array(items) => match (&items[0], &items[1], &items[2]) {
                (RespReply::Integer(lo), RespReply::Integer(hi), RespReply::Array(master)) => {
                    let RespReply::Integer(port) = master[1] else {
                        panic!("master entry {master:?}");
                    };
                    (*lo, *hi, u16::try_from(port).expect("port"))
                }
                other => panic!("slot range {other:?}"),
            },
            other => panic!("slot range {other:?}"),
        })
        .collect()
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

    for &(_, port) in &nodes {
        let info = redis_cmd(port, &[b"CLUSTER", b"INFO"]).await?;
        assert!(
            info.as_str()
                .unwrap_or_default()
                .contains("cluster_state:ok")
        );
    }

    let ranges = slot_ranges(&redis_cmd(nodes[0].1, &[b"CLUSTER", b"SLOTS"]).await?);
    let covered: i64 = ranges.iter().map(|(lo, hi, _)| hi - lo + 1).sum();
    assert_eq!(covered, 16384);
    let owners: HashSet<u16> = ranges.iter().map(|r| r.2).collect();
    assert_eq!(owners, ports, "every master owns slots");

    // SET keys of different slots directly on their owner; a non-owner MOVEs.
    let mut used_owners = HashSet::new();
    for i in 0..30 {
        let key = format!("key:{i}");
        let RespReply::Integer(slot) =
            redis_cmd(nodes[0].1, &[b"CLUSTER", b"KEYSLOT", key.as_bytes()]).await?
        else {
            panic!("KEYSLOT");
        };
        let owner = ranges
            .iter()
            .find(|(lo, hi, _)| (*lo..=*hi).contains(&slot))
            .map(|r| r.2)
            .expect("slot covered");
        used_owners.insert(owner);
        assert_eq!(
            redis_cmd(owner, &[b"SET", key.as_bytes(), b"v"]).await?,
            RespReply::Simple("OK".into())
        );
        let other = *ports.iter().find(|p| **p != owner).expect("other node");
        let moved = redis_cmd(other, &[b"GET", key.as_bytes()]).await?;
        assert_eq!(
            moved,
            RespReply::Error(format!("MOVED {slot} 127.0.0.1:{owner}"))
        );
        assert_eq!(
            cluster.cmd(&[b"GET", key.as_bytes()]).await?,
            RespReply::Bulk(b"v".to_vec())
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
        cluster.cmd(&[b"SET", b"after-restart", b"1"]).await?,
        RespReply::Simple("OK".into())
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
