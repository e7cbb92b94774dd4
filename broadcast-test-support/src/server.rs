//! A real axum + socketioxide server on a loopback port, for tests.

use std::net::SocketAddr;

use socketioxide::adapter::Adapter;
use socketioxide::layer::SocketIoLayer;
use tokio::task::JoinHandle;

/// A running server; stopped when dropped.
pub struct TestServer {
    /// Where it listens.
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `layer` (plus an empty router) on `127.0.0.1:0`.
    pub async fn serve<A: Adapter>(layer: SocketIoLayer<A>) -> std::io::Result<TestServer> {
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
