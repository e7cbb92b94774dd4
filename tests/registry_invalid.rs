//! Hand-written events skip the derive's compile-time checks; the registry
//! check at startup catches what the derive would have refused. (A test
//! binary of its own: these registrations would break the other registry
//! tests' clean slate.)

use broadcast_core::registry::{self, RegistryError};
use broadcast_core::{BroadcastEvent, PayloadError, register_event};

macro_rules! hand_written {
    ($ty:ident, $name:literal, $ns:literal) => {
        #[derive(serde::Serialize)]
        struct $ty;
        impl BroadcastEvent for $ty {
            const NAME: &'static str = $name;
            const NAMESPACE: &'static str = $ns;
            async fn broadcast_as(&self) -> Result<impl serde::Serialize, PayloadError> {
                Ok(self)
            }
        }
        register_event!($ty);
    };
}

hand_written!(Disconnect, "disconnect", "/");
hand_written!(Joined, "joined", "/");
hand_written!(JoinChat, "join_chat", "/");
hand_written!(Empty, "", "/");
hand_written!(BadNamespace, "fine", "admin");
hand_written!(Fine, "message_posted", "/");

#[test]
fn startup_check_refuses_what_the_derive_would() {
    let errors = registry::validate().unwrap_err();
    let mut invalid: Vec<(&str, String)> = errors
        .iter()
        .filter_map(|e| match e {
            RegistryError::InvalidEvent { name, reason, .. } => Some((*name, reason.clone())),
            _ => None,
        })
        .collect();
    invalid.sort();
    let names: Vec<&str> = invalid.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        names,
        ["", "disconnect", "fine", "join_chat", "joined"],
        "{errors}"
    );
    let reason = |n: &str| {
        invalid
            .iter()
            .find(|(name, _)| *name == n)
            .unwrap()
            .1
            .clone()
    };
    assert!(reason("disconnect").contains("Socket.IO reserves"));
    assert!(reason("joined").contains("join protocol sends"));
    assert!(reason("join_chat").contains("join_*"));
    assert!(reason("").contains("empty"));
    assert!(reason("fine").contains("must start with `/`"));
    // One error for `?`, which lists every problem.
    let text = errors.to_string();
    assert!(
        text.contains("5 problems") && text.contains("disconnect"),
        "{text}"
    );
}
