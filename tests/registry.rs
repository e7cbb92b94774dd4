//! The registry lists every derived event with its templates, and reports
//! two types sharing one event name in one namespace.

use broadcast_core::registry::{self, RegistryError};
use broadcast_core::{BroadcastEvent, PayloadError, register_event};
use serde::Serialize;

#[derive(Serialize, BroadcastEvent)]
#[broadcast(on = ["chat|{chat_id}", "user|{owner}"])]
struct ChatArchived {
    chat_id: u64,
    owner: u64,
}

#[derive(Serialize, BroadcastEvent)]
#[broadcast(namespace = "/admin", as = json_summary)]
struct AuditEvent {
    text: String,
}
fn json_summary(e: &AuditEvent) -> serde_json::Value {
    serde_json::json!({ "len": e.text.len() })
}

mod billing {
    /// Same name as `crate::shop::InvoicePaid` in the same namespace: a clash.
    #[derive(serde::Serialize, broadcast_core::BroadcastEvent)]
    #[broadcast(on = "billing")]
    pub struct InvoicePaid {
        pub id: u64,
    }
}

mod shop {
    #[derive(serde::Serialize, broadcast_core::BroadcastEvent)]
    #[broadcast(on = "shop")]
    pub struct InvoicePaid {
        pub id: u64,
    }

    /// Same name but another namespace: not a clash.
    #[derive(serde::Serialize, broadcast_core::BroadcastEvent)]
    #[broadcast(name = "audit", namespace = "/shop")]
    pub struct ShopAudit {
        pub id: u64,
    }
}

#[derive(Serialize)]
struct Tick;
impl BroadcastEvent for Tick {
    const NAME: &'static str = "tick";
    async fn broadcast_as(&self) -> Result<impl Serialize, PayloadError> {
        Ok(self)
    }
}
register_event!(Tick, rooms = ["clock"]);

#[test]
fn every_derived_event_is_listed_with_its_templates() {
    let e = registry::events()
        .find(|e| e.name == "chat_archived")
        .expect("chat_archived registered");
    assert_eq!(e.rooms, ["chat|{chat_id}", "user|{owner}"]);
    assert_eq!(e.namespace, "/");
    assert_eq!(e.type_name, "ChatArchived");
    assert_eq!(e.payload, "ChatArchived");
    assert_eq!(e.module_path, "registry");
    assert!(e.file.ends_with("tests/registry.rs"), "{}", e.file);
    assert!(e.line > 0);
    assert_eq!(e.room_keys().collect::<Vec<_>>(), ["chat", "user"]);

    let audit = registry::events()
        .find(|e| e.name == "audit" && e.namespace == "/admin")
        .unwrap();
    assert_eq!(audit.namespace, "/admin");
    assert_eq!(audit.payload, "json_summary");
    assert!(audit.rooms.is_empty());

    let names: Vec<_> = registry::events().map(|e| (e.namespace, e.name)).collect();
    for want in [
        ("/", "chat_archived"),
        ("/admin", "audit"),
        ("/", "invoice_paid"),
        ("/shop", "audit"),
        ("/", "tick"),
    ] {
        assert!(names.contains(&want), "{want:?} missing from {names:?}");
    }
    // Sorted by namespace, then name.
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);
}

#[test]
fn hand_written_impls_register_too() {
    let t = registry::events().find(|e| e.name == "tick").unwrap();
    assert_eq!(t.rooms, ["clock"]);
    assert_eq!(t.type_name, "Tick");
}

#[test]
fn duplicate_names_in_one_namespace_are_reported() {
    let errors = registry::validate().unwrap_err();
    assert_eq!(errors.len(), 1, "{errors:?}");
    match &errors[0] {
        RegistryError::DuplicateEvent {
            namespace,
            name,
            types,
        } => {
            assert_eq!((*namespace, *name), ("/", "invoice_paid"));
            assert_eq!(types.len(), 2);
            assert!(
                types
                    .iter()
                    .any(|t| t.starts_with("registry::billing::InvoicePaid"))
            );
            assert!(
                types
                    .iter()
                    .any(|t| t.starts_with("registry::shop::InvoicePaid"))
            );
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(errors[0].to_string().contains("invoice_paid"));
    assert!(registry::log_startup_listing().is_err());
}

#[test]
fn listing_and_json_snapshot() {
    let table = registry::listing();
    assert!(table.contains("chat_archived"), "{table}");
    assert!(table.contains("chat|{chat_id}, user|{owner}"), "{table}");
    assert!(table.contains("EVENT"));
    let json = serde_json::to_value(registry::snapshot()).unwrap();
    let events = json["events"].as_array().unwrap();
    let archived = events
        .iter()
        .find(|e| e["name"] == "chat_archived")
        .unwrap();
    assert_eq!(
        archived["rooms"],
        serde_json::json!(["chat|{chat_id}", "user|{owner}"])
    );
    assert_eq!(archived["namespace"], "/");
    assert!(json["rooms"].is_array());
}
