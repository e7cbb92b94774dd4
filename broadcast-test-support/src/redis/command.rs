//! Commands to a test Redis through fred, the client broadcast-core itself
//! uses: one short-lived connection per call, so a test can run a command
//! against a server it just killed or restarted without a client that
//! reconnects behind its back.

use std::time::Duration;

use fred::prelude::{
    Builder, ClientLike, Config, ConnectionConfig, FromValue, PerformanceConfig, ServerConfig,
    Value,
};
use fred::types::config::TlsConfig;
use fred::types::{ClusterHash, CustomCommand};

use crate::error::HarnessError;
use crate::ports::LOOPBACK;

/// Upper bound for one [`command`] (connect, send, read the reply).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs one command on the Redis at `url` (any URL fred takes, e.g.
/// `redis://127.0.0.1:{port}` or `redis-cluster://...`) and converts the
/// reply to `R`. The first argument is the command's name:
///
/// ```no_run
/// # use broadcast_test_support::redis::command;
/// # async fn demo(url: &str) -> Result<(), broadcast_test_support::HarnessError> {
/// let _: () = command(url, ["CONFIG", "SET", "maxmemory", "64mb"]).await?;
/// let pong: String = command(url, ["PING"]).await?;
/// # let _ = pong;
/// # Ok(())
/// # }
/// ```
///
/// An error reply (`-ERR ...`, `-MOVED ...`), an unreachable server, a reply
/// that does not convert to `R` and exceeding [`CMD_TIMEOUT`] are all `Err`.
pub async fn command<R, A>(url: &str, args: impl IntoIterator<Item = A>) -> Result<R, HarnessError>
where
    R: FromValue,
    A: Into<Value>,
{
    let config = Config::from_url(url).map_err(|source| HarnessError::Redis {
        what: format!("parsing {url}"),
        source,
    })?;
    run(
        config,
        args.into_iter().map(Into::into).collect(),
        CMD_TIMEOUT,
    )
    .await
}

/// [`command`] on `127.0.0.1:{port}`, with its own bound.
pub(crate) async fn on_port<R: FromValue>(
    port: u16,
    args: Vec<Value>,
    timeout: Duration,
) -> Result<R, HarnessError> {
    on_port_tls(port, None, args, timeout).await
}

/// [`on_port`], over TLS when `tls` is given (a TLS-only test server).
pub(crate) async fn on_port_tls<R: FromValue>(
    port: u16,
    tls: Option<&TlsConfig>,
    args: Vec<Value>,
    timeout: Duration,
) -> Result<R, HarnessError> {
    let config = Config {
        server: ServerConfig::new_centralized(LOOPBACK, port),
        tls: tls.cloned(),
        ..Config::default()
    };
    run(config, args, timeout).await
}

/// [`command`] on a cluster given by its nodes' ports; fred follows
/// `MOVED` redirects.
pub(crate) async fn on_cluster<R: FromValue>(
    ports: &[u16],
    args: Vec<Value>,
) -> Result<R, HarnessError> {
    let config = Config {
        server: ServerConfig::new_clustered(ports.iter().map(|p| (LOOPBACK, *p)).collect()),
        ..Config::default()
    };
    run(config, args, CMD_TIMEOUT).await
}

async fn run<R: FromValue>(
    config: Config,
    mut args: Vec<Value>,
    timeout: Duration,
) -> Result<R, HarnessError> {
    if args.is_empty() {
        return Err(HarnessError::Protocol("empty command".into()));
    }
    let name = args.remove(0);
    let Some(name) = name.as_string() else {
        return Err(HarnessError::Protocol(format!(
            "command name {name:?} is not a string"
        )));
    };
    let what = format!("running {name} on {}", describe(&config.server));
    let attempt = async {
        let client = connect(config, timeout).await?;
        let cmd = CustomCommand::new(name.clone(), ClusterHash::FirstKey, false);
        let reply = client.custom::<R, Value>(cmd, args).await;
        // The reply is what counts; a failed QUIT only leaves a socket that
        // the server closes.
        let _ = client.quit().await;
        reply
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(reply)) => Ok(reply),
        Ok(Err(source)) => Err(HarnessError::Redis { what, source }),
        Err(_) => Err(HarnessError::Timeout { what, timeout }),
    }
}

/// A connected client that fails at once instead of reconnecting: a test
/// asks whether the server answers *now*.
async fn connect(
    config: Config,
    timeout: Duration,
) -> Result<fred::prelude::Client, fred::error::Error> {
    let config = Config {
        fail_fast: true,
        ..config
    };
    let mut builder = Builder::from_config(config);
    builder
        .set_connection_config(ConnectionConfig {
            connection_timeout: timeout,
            internal_command_timeout: timeout,
            max_command_attempts: 1,
            ..ConnectionConfig::default()
        })
        .set_performance_config(PerformanceConfig {
            default_command_timeout: timeout,
            ..PerformanceConfig::default()
        });
    let client = builder.build()?;
    client.init().await?;
    Ok(client)
}

fn describe(server: &ServerConfig) -> String {
    match server {
        ServerConfig::Centralized { server } => format!("{}:{}", server.host, server.port),
        ServerConfig::Clustered { hosts, .. } => {
            let nodes: Vec<String> = hosts
                .iter()
                .map(|s| format!("{}:{}", s.host, s.port))
                .collect();
            format!("the cluster {}", nodes.join(","))
        }
        other => format!("{other:?}"),
    }
}
