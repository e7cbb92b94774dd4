//! A fresh PostgreSQL database per test, on the server of `DATABASE_URL`
//! (default `postgres://postgres@127.0.0.1:5432/test`, the development
//! machine's, trust authentication), dropped when the test ends.
//!
//! The server is not started here: `.ci/run` installs and starts one. When
//! it cannot be reached, a test skips loudly outside CI and fails in CI
//! (`CI=true`), as with a missing `redis-server` (see [`env`](crate::env)).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgPool};

use crate::HarnessError;
use crate::env::{is_ci, loud};

/// The server used when `DATABASE_URL` is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database created for one test, dropped (with `FORCE`, closing what
/// still uses it) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    server: PgConnectOptions,
}

fn pg_err(context: &str) -> impl FnOnce(sqlx::Error) -> HarnessError + '_ {
    move |e| HarnessError::Postgres {
        context: context.to_owned(),
        reason: e.to_string(),
    }
}

/// The server's URL: `DATABASE_URL`, else [`DEFAULT_URL`].
pub fn server_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

impl TestDatabase {
    /// Creates `t_<pid>_<n>_<nanos>` on the server. `Ok(None)`: the server
    /// cannot be reached outside CI (a loud skip line was written); `Err`
    /// in CI.
    pub async fn create(test_name: &str) -> Result<Option<TestDatabase>, HarnessError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let url = server_url();
        let server: PgConnectOptions = url.parse().map_err(pg_err("parsing DATABASE_URL"))?;
        let server = server.log_statements(tracing::log::LevelFilter::Trace);
        let mut admin = match tokio::time::timeout(Duration::from_secs(5), server.connect()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return unreachable_server(&url, test_name, e.to_string()),
            Err(_) => return unreachable_server(&url, test_name, "no answer within 5s".into()),
        };
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "t_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .map_err(pg_err("creating the test database"))?;
        let _ = admin.close().await;
        let db = server.clone().database(&name);
        Ok(Some(TestDatabase {
            url: db.to_url_lossy().to_string(),
            name,
            server,
        }))
    }

    /// The database's URL, for a child process.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A pool on the database.
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool, HarnessError> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(self.server.clone().database(&self.name))
            .await
            .map_err(pg_err("connecting to the test database"))
    }
}

fn unreachable_server(
    url: &str,
    test_name: &str,
    reason: String,
) -> Result<Option<TestDatabase>, HarnessError> {
    let url = hide_password(url);
    if is_ci() {
        return Err(HarnessError::MissingPostgresInCi { url, reason });
    }
    loud(&format!(
        "=== SKIPPING {test_name}: PostgreSQL not reachable at {url} ({reason}); install and start it (apt-get install postgresql) or set DATABASE_URL ==="
    ));
    Ok(None)
}

/// `url` with any password replaced by `***`.
fn hide_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // Drop runs inside a runtime, where blocking on one is not allowed:
        // a thread with its own runtime drops the database.
        let server = self.server.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut admin = server.connect().await.ok()?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut admin)
                .await
                .ok()?;
                admin.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            loud(&format!(
                "warning: could not drop test database {}",
                self.name
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            hide_password("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(hide_password("postgres://u@h/db"), "postgres://u@h/db");
    }
}
