//! Which presence service serves a Socket.IO server, by the server's id:
//! the join protocol finds it from the `SocketIo` it is wired into, the
//! Redis layer registers its own before that, and queries find either.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use super::memory::MemoryStore;
use super::service::PresenceService;
#[cfg(feature = "redis")]
use super::store::Store;

static SERVICES: Mutex<Option<HashMap<String, Weak<PresenceService>>>> = Mutex::new(None);

/// Registers the service of the server `server_id` on `store` (replacing
/// any other).
#[cfg(feature = "redis")]
pub(crate) fn register(server_id: &str, store: Arc<dyn Store>) -> Arc<PresenceService> {
    let service = Arc::new(PresenceService::new(store));
    let mut map = SERVICES.lock().unwrap_or_else(PoisonError::into_inner);
    let map = map.get_or_insert_with(HashMap::new);
    map.retain(|_, w| w.strong_count() > 0);
    map.insert(server_id.to_owned(), Arc::downgrade(&service));
    service
}

/// The service of `server_id`: the registered one, else an in-memory one
/// (created on first use, kept while anything holds it).
pub(crate) fn for_server(server_id: &str) -> Arc<PresenceService> {
    let mut map = SERVICES.lock().unwrap_or_else(PoisonError::into_inner);
    let map = map.get_or_insert_with(HashMap::new);
    if let Some(service) = map.get(server_id).and_then(Weak::upgrade) {
        return service;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let service = Arc::new(PresenceService::new(Arc::new(MemoryStore::default())));
    map.insert(server_id.to_owned(), Arc::downgrade(&service));
    service
}
