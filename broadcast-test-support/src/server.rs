//! A real axum + socketioxide server on a loopback port, for tests.

use std::net::SocketAddr;

use std::convert::Infallible;

use axum::extract::Request;
use axum::response::IntoResponse;
use axum::routing::Route;
use tokio::task::JoinHandle;
use tower_layer::Layer;
use tower_service::Service;

/// A running server; stopped when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `layer` (plus an empty router) on `127.0.0.1:0`: a
    /// socketioxide layer, or one wrapping it (the framework's
    /// `CompactRequestLayer`).
    pub async fn serve<L>(layer: L) -> std::io::Result<TestServer>
    where
        L: Layer<Route> + Clone + Send + Sync + 'static,
        L::Service: Service<Request> + Clone + Send + Sync + 'static,
        <L::Service as Service<Request>>::Response: IntoResponse + 'static,
        <L::Service as Service<Request>>::Error: Into<Infallible> + 'static,
        <L::Service as Service<Request>>::Future: Send + 'static,
    {
        Self::serve_router(axum::Router::new().layer(layer)).await
    }

    /// Serves an axum router on `127.0.0.1:0`.
    pub async fn serve_router(router: axum::Router) -> std::io::Result<TestServer> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, router).await {
                tracing::error!("test server stopped: {e}");
            }
        });
        Ok(TestServer { addr, task })
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
