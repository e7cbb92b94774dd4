//! Copies each request's head out of hyper's read buffer before socketioxide
//! keeps it.

use std::task::{Context, Poll};

use http::{HeaderMap, HeaderValue, Request, Uri};
use tower_layer::Layer;
use tower_service::Service;

/// A tower layer around a Socket.IO layer (or any service) that gives each
/// request a URI and header values of their own instead of slices of the
/// connection's read buffer.
///
/// Why: hyper parses a request without copying: its URI and header values
/// are slices of the connection's read buffer (8 KiB, reserved up to
/// 16 KiB). engineioxide keeps the request head of every session for the
/// session's life (`Socket::req_parts`), so each websocket connection pinned
/// that whole buffer, for a ~300-byte head: measured with heaptrack on a
/// server holding 2,000 connections, 31 MB of its 70 MB heap were these
/// buffers (`broadcast-e2e conns`, BENCHMARKS.md "Many connections on one
/// server"). The copy costs a handful of small allocations per HTTP request.
///
/// With feature `axum` (default) the copy of the URI that axum's router
/// keeps in the request's extensions (`OriginalUri`) is replaced too;
/// without it, behind an axum router, that copy still pins the buffer.
///
/// [`redis::server`](crate::redis::server)'s layer already includes it; wrap
/// a layer of your own with it:
///
/// ```
/// use broadcast_core::transport::CompactRequestLayer;
///
/// let (layer, _io) = socketioxide::SocketIo::new_layer();
/// let app: axum::Router = axum::Router::new().layer(CompactRequestLayer::new(layer));
/// # drop(app);
/// ```
#[derive(Debug, Clone)]
pub struct CompactRequestLayer<L> {
    inner: L,
}

impl<L> CompactRequestLayer<L> {
    /// Wraps `inner`: its services see compacted requests.
    ///
    /// ```
    /// # use broadcast_core::transport::CompactRequestLayer;
    /// let (layer, _io) = socketioxide::SocketIo::new_layer();
    /// let compact = CompactRequestLayer::new(layer);
    /// let _socketio_layer = compact.into_inner();
    /// ```
    pub fn new(inner: L) -> Self {
        Self { inner }
    }

    /// The wrapped layer.
    ///
    /// ```
    /// # use broadcast_core::transport::CompactRequestLayer;
    /// let (layer, _io) = socketioxide::SocketIo::new_layer();
    /// let _inner = CompactRequestLayer::new(layer).into_inner();
    /// ```
    pub fn into_inner(self) -> L {
        self.inner
    }
}

impl<S, L: Layer<S>> Layer<S> for CompactRequestLayer<L> {
    type Service = CompactRequest<L::Service>;

    fn layer(&self, inner: S) -> Self::Service {
        CompactRequest {
            inner: self.inner.layer(inner),
        }
    }
}

/// The service of [`CompactRequestLayer`]: copies the request's URI and
/// header values, then calls the wrapped service.
///
/// ```
/// use broadcast_core::transport::{CompactRequest, CompactRequestLayer};
/// use tower_layer::Layer;
///
/// let (layer, _io) = socketioxide::SocketIo::new_layer();
/// // What is not Socket.IO goes on to the wrapped service (here a router).
/// let _svc: CompactRequest<_> = CompactRequestLayer::new(layer).layer(axum::Router::<()>::new());
/// ```
#[derive(Debug, Clone)]
pub struct CompactRequest<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for CompactRequest<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(compact(req))
    }
}

/// The request with an owned URI and owned header values (names are owned
/// already: hyper copies names it does not know, the others are static).
fn compact<B>(req: Request<B>) -> Request<B> {
    let (mut parts, body) = req.into_parts();
    // A URI that does not parse back unchanged stays as it was: it cannot
    // happen for one hyper parsed, and the copy is only about memory.
    if let Ok(uri) = Uri::try_from(parts.uri.to_string()) {
        parts.uri = uri;
    }
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    for (name, value) in &parts.headers {
        let mut owned = HeaderValue::from_bytes(value.as_bytes()).unwrap_or_else(|_| value.clone());
        owned.set_sensitive(value.is_sensitive());
        headers.append(name.clone(), owned);
    }
    parts.headers = headers;
    // axum's router records the URI it was given before routing (the
    // `OriginalUri` extractor): a clone sharing the same buffer, which the
    // session would keep through the request's extensions.
    #[cfg(feature = "axum")]
    if let Some(axum::extract::OriginalUri(original)) = parts.extensions.get()
        && let Ok(uri) = Uri::try_from(original.to_string())
    {
        parts.extensions.insert(axum::extract::OriginalUri(uri));
    }
    Request::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_head_and_owns_it() {
        let req = Request::builder()
            .uri("/socket.io/?EIO=4&transport=websocket")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
            .header("x-many", "a")
            .header("x-many", "b")
            .body(())
            .expect("request");
        let req = compact(req);
        assert_eq!(req.uri(), "/socket.io/?EIO=4&transport=websocket");
        assert_eq!(
            req.headers()["sec-websocket-key"],
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
        let many: Vec<_> = req.headers().get_all("x-many").iter().collect();
        assert_eq!(many, ["a", "b"]);
    }
}
