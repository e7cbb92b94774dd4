//! A loopback TCP proxy in front of a chat server, which can take its
//! clients offline and send them to another server, as a lost network and a
//! load balancer do.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// [`set_online(false)`](Self::set_online) closes every proxied connection
/// and refuses new ones until it is set online again;
/// [`set_upstream`](Self::set_upstream) sends new connections elsewhere.
pub struct CutProxy {
    pub addr: SocketAddr,
    online: watch::Sender<bool>,
    upstream: Arc<Mutex<SocketAddr>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr) -> CutProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binding");
        let addr = listener.local_addr().expect("local addr");
        let (online, _) = watch::channel(true);
        let upstream = Arc::new(Mutex::new(upstream));
        let (tx, to) = (online.clone(), upstream.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let mut rx = tx.subscribe();
                if !*rx.borrow_and_update() {
                    continue; // dropped: refused, as offline
                }
                let target = *to.lock().unwrap_or_else(PoisonError::into_inner);
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = rx.wait_for(|on| !*on) => {}
                    }
                    // Both streams drop here: the client and the server see
                    // the connection end.
                });
            }
        });
        CutProxy {
            addr,
            online,
            upstream,
            accept,
        }
    }

    pub fn set_online(&self, on: bool) {
        self.online.send_replace(on);
    }

    /// Where connections made from now on go.
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.upstream.lock().unwrap_or_else(PoisonError::into_inner) = upstream;
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.set_online(false);
    }
}
