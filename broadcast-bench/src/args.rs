//! Command-line flags (`--name value` or `--name=value`), without a parser
//! dependency.

use std::collections::HashMap;
use std::str::FromStr;

use crate::{Result, bail};

pub const USAGE: &str = "\
broadcast-e2e: end-to-end Socket.IO broadcast benchmark (framework vs plain socketioxide-redis)

USAGE:
    broadcast-e2e [run] [OPTIONS]
    broadcast-e2e conns [OPTIONS]   memory per connection on one server (conns --help)

Prints ONE JSON line on stdout (progress goes to stderr). With one variant
and --runs 1 it is the run's flat result; otherwise a summary with medians,
min/max per variant, framework/baseline ratios and every run.

OPTIONS:
    --variant V         framework | baseline | baseline-defaults | compare, or a
                        comma-separated list of variants run interleaved   [compare]
                        compare = framework,baseline (F,B,B,F,F,B,..)
    --servers S         Socket.IO server processes                            [2]
    --clients N         websocket clients, spread round-robin over servers    [200]
    --rooms R           rooms; client i joins room i % R (and the next ones
                        with --rooms-per-client)                              [10]
    --rooms-per-client K                                                      [1]
    --events E          events broadcast per room                             [500]
    --pad B             bytes of padding in each payload                      [100]
    --rate X            events/s over all rooms; 0 = as fast as the worker can [0]
    --inflight W        broadcasts the worker keeps in flight (1 = await each
                        before the next)                                      [16]
    --runs K            runs per variant                         [5 for compare, else 1]
    --redis-url URL     use this Redis (default: $REDIS_URL, else a fresh
                        redis-server on a free loopback port)
    --server-threads T  tokio worker threads per server process (0 = tokio's default) [0]
    --quiet-ms MS       end a run after MS without new deliveries             [2000]
    --settle-ms MS      once every expected delivery arrived, watch MS more
                        for duplicates                                        [300]
    --timeout-s SECS    upper bound on one run's delivery phase               [60]
    --room-key K        room key: `room` (no history) or `hroom` (a room type
                        keeping its last 1,000 events: every event gets an
                        offset in Redis, and carries its position)            [room]

    --placement P       blocks: blocks of R consecutive clients per server, so every
                        server holds members of every room; rooms: all members of
                        room r on server r % S (each server holds 1/S of the rooms) [blocks]

Environment:
    BROADCAST_BENCH_ROOM_CHANNELS=off   the framework's broadcasts to typed rooms go on the
                        namespace channel every server reads, as before room channels
    BROADCAST_BENCH_SERVER_WRAPPER=PROGRAM   runs each server as `PROGRAM <server command>`,
                        e.g. a script that `exec`s valgrind --tool=callgrind (keeping the pid,
                        so CPU and context switches are still the server's)
    BROADCAST_BENCH_WORKER_WRAPPER=PROGRAM   the same for the worker process

Variants:
    framework          broadcast_core::redis::server / worker with default settings
    baseline           socketioxide + socketioxide-redis (its fred driver, RESP3) with
                       fred's pub/sub channel, the adapter stream buffer and the socket
                       buffer raised to the framework's defaults (16384, 65536, 4096);
                       the worker is a socketioxide server with the Redis adapter and no
                       clients calling io.to(room).emit(..)
    baseline-defaults  the same with every buffer at its library default (32, 1024, 128)
    framework-servers  diagnostic: framework servers, baseline worker
    framework-worker   diagnostic: baseline servers, framework worker
";

/// Parsed `--flag value` pairs.
pub struct Flags {
    values: HashMap<String, String>,
}

impl Flags {
    /// Parses `argv`, refusing flags not in `known`.
    pub fn parse(argv: &[String], known: &[&str]) -> Result<Flags> {
        let mut values = HashMap::new();
        let mut it = argv.iter();
        while let Some(arg) = it.next() {
            let Some(flag) = arg.strip_prefix("--") else {
                bail!("unexpected argument `{arg}` (see --help)");
            };
            let (name, value) = match flag.split_once('=') {
                Some((n, v)) => (n.to_owned(), v.to_owned()),
                None => {
                    let Some(v) = it.next() else {
                        bail!("--{flag} needs a value");
                    };
                    (flag.to_owned(), v.clone())
                }
            };
            if !known.contains(&name.as_str()) {
                bail!("unknown option --{name} (see --help)");
            }
            values.insert(name, value);
        }
        Ok(Flags { values })
    }

    /// The value of `--name`, or `default`.
    pub fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.values.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|e| format!("--{name} {v}: {e}").into()),
        }
    }

    /// The value of `--name`, if given.
    pub fn opt(&self, name: &str) -> Option<&str> {
        self.values.get(name).map(String::as_str)
    }

    /// The value of a required `--name`.
    pub fn req(&self, name: &str) -> Result<&str> {
        match self.opt(name) {
            Some(v) => Ok(v),
            None => bail!("missing --{name}"),
        }
    }
}

/// What the servers and the worker run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    /// broadcast-core's Redis server and worker.
    Framework,
    /// Plain socketioxide-redis with its buffers raised.
    Baseline,
    /// Plain socketioxide-redis with library defaults.
    BaselineDefaults,
    /// Diagnostic: framework servers, baseline worker.
    FrameworkServers,
    /// Diagnostic: baseline servers, framework worker.
    FrameworkWorker,
}

impl Variant {
    pub fn as_str(self) -> &'static str {
        match self {
            Variant::Framework => "framework",
            Variant::Baseline => "baseline",
            Variant::BaselineDefaults => "baseline-defaults",
            Variant::FrameworkServers => "framework-servers",
            Variant::FrameworkWorker => "framework-worker",
        }
    }

    /// What the server processes run.
    pub fn servers(self) -> Variant {
        match self {
            Variant::FrameworkServers => Variant::Framework,
            Variant::FrameworkWorker => Variant::Baseline,
            v => v,
        }
    }

    /// What the worker process runs.
    pub fn worker(self) -> Variant {
        match self {
            Variant::FrameworkServers => Variant::Baseline,
            Variant::FrameworkWorker => Variant::Framework,
            v => v,
        }
    }
}

impl FromStr for Variant {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "framework" => Ok(Variant::Framework),
            "baseline" => Ok(Variant::Baseline),
            "baseline-defaults" => Ok(Variant::BaselineDefaults),
            "framework-servers" => Ok(Variant::FrameworkServers),
            "framework-worker" => Ok(Variant::FrameworkWorker),
            other => Err(format!(
                "unknown variant `{other}` (framework, baseline, baseline-defaults, framework-servers, framework-worker)"
            )),
        }
    }
}
