//! `#[derive(BroadcastEvent)]`: parse, check everything, then expand or
//! fall back.

mod expand;
mod validate;

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::fallback;
use crate::internals::Ctxt;
use crate::internals::ast::{Container, Derive};
use crate::internals::attr::EventAttrs;

pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let attrs = EventAttrs::from_ast(&cx, &input.attrs);
    let krate = attrs.krate();
    let event = Container::from_ast(&cx, input, Derive::Event)
        .map(|cont| validate::event(&cx, cont, attrs));
    match (cx.check(), event) {
        (Ok(()), Some(event)) => expand::event(&event),
        (Err(err), _) => fallback::event(input, &krate, err),
        // `Container::from_ast` reports why whenever it returns nothing.
        (Ok(()), None) => fallback::event(input, &krate, fallback::unexplained(input)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    /// The expansion, or every error message.
    fn derive_event(input: DeriveInput) -> Result<String, Vec<String>> {
        let cx = Ctxt::new();
        let attrs = EventAttrs::from_ast(&cx, &input.attrs);
        let event = Container::from_ast(&cx, &input, Derive::Event)
            .map(|cont| validate::event(&cx, cont, attrs));
        match cx.check() {
            Ok(()) => Ok(expand::event(&event.unwrap()).to_string()),
            Err(err) => Err(err.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    fn errors(input: DeriveInput) -> Vec<String> {
        derive_event(input).unwrap_err()
    }

    #[test]
    fn default_names_come_from_the_rules() {
        let out = derive_event(parse_quote!(
            struct NewUserRegisteredEvent;
        ))
        .unwrap();
        assert!(
            out.contains(r#"const NAME : & 'static str = "new_user_registered""#),
            "{out}"
        );
        // One registration; the schema of `Self` without `as`.
        assert_eq!(out.matches("inventory :: submit !").count(), 1, "{out}");
        assert!(
            out.contains("SchemaProbe :: < NewUserRegisteredEvent >"),
            "{out}"
        );
    }

    #[test]
    fn payload_without_a_type_has_no_schema() {
        let out = derive_event(parse_quote!(
            #[broadcast(as = Self::payload)]
            struct Ping;
        ))
        .unwrap();
        assert!(
            out.contains(". payload_schema (:: broadcast_core :: __private :: no_schema)"),
            "{out}"
        );
    }

    #[test]
    fn reserved_names() {
        assert_eq!(
            errors(parse_quote!(
                #[broadcast(name = "disconnect")]
                struct Gone;
            )),
            [
                "event name `disconnect` is reserved: Socket.IO reserves this event name; pick another with `#[broadcast(name = \"...\")]`"
            ]
        );
        assert_eq!(
            errors(parse_quote!(
                #[broadcast(name = "joined")]
                struct Joined;
            )),
            [
                "event name `joined` is reserved: the join protocol sends an event of this name to clients; pick another with `#[broadcast(name = \"...\")]`"
            ]
        );
        assert_eq!(
            errors(parse_quote!(
                struct JoinChat;
            )),
            [
                "the default event name `join_chat` is reserved: clients send `join_*` and `leave_*` events to join and leave rooms; pick another with `#[broadcast(name = \"...\")]`"
            ]
        );
        // An explicit name clears a reserved default.
        assert!(
            derive_event(parse_quote!(
                #[broadcast(name = "chat_joined")]
                struct JoinChat;
            ))
            .is_ok()
        );
    }

    #[test]
    fn names_and_namespaces_follow_the_rules() {
        let long = "x".repeat(broadcast_rules::MAX_NAME_LEN + 1);
        assert_eq!(
            errors(parse_quote!(
                #[broadcast(name = "", namespace = "admin")]
                #[broadcast(on = "chat")]
                struct A;
            )),
            [
                "the event name is empty",
                "a namespace must start with `/`: write `\"/admin\"`"
            ]
        );
        assert_eq!(
            errors(parse_quote!(
                #[broadcast(name = #long, namespace = "/a?b")]
                struct A;
            )),
            [
                "the event name is 257 bytes long, more than the 256 allowed",
                "a namespace cannot contain `?`"
            ]
        );
    }

    #[test]
    fn templates() {
        let long = format!("{}|{{id}}", "x".repeat(broadcast_rules::MAX_NAME_LEN + 1));
        assert_eq!(
            errors(parse_quote!(
                #[broadcast(on = ["", "a\u{7}{id}", #long, "chat|{idd}", "{id"])]
                struct A {
                    id: u64,
                }
            )),
            [
                "the room name is empty",
                "the room name contains a control character",
                "the fixed text of this room template is 258 bytes long, more than the 256 a room name may have",
                "room template refers to `idd`, which is not a field of this struct; its fields are: id",
                "unclosed `{` in room template; write `{{` for a literal brace",
            ]
        );
        assert_eq!(
            errors(parse_quote!(
                #[broadcast(on = [])]
                struct A;
            )),
            ["`on = []` names no room; remove `on` to use the default room",]
        );
        assert_eq!(
            errors(parse_quote!(
                #[broadcast(on = "{x}")]
                struct A;
            )),
            ["room template refers to `x`, which is not a field of this struct; it has no fields",]
        );
        // Fields are named as users write them and reached as the code must.
        let out = derive_event(parse_quote!(
            #[broadcast(on = ["lobby", "t|{type}|{chat.id}"])]
            struct A {
                r#type: u8,
                chat: Chat,
            }
        ));
        let out = out.unwrap();
        assert!(out.contains(r#"format ! ("t|{}|{}""#), "{out}");
        assert!(out.contains("self . r#type"), "{out}");
        assert!(out.contains("self . chat . id"), "{out}");
        let out = derive_event(parse_quote!(
            #[broadcast(on = "p|{1}|{0.x}")]
            struct A(u8, u8);
        ));
        let out = out.unwrap();
        assert!(out.contains("self . 1 , self . 0 . x"), "{out}");
    }

    #[test]
    fn every_error_at_once() {
        assert_eq!(
            errors(parse_quote!(
                #[broadcast(to = "x", name = "")]
                enum E {}
            )),
            [
                "unknown broadcast attribute `to`; expected one of: on, as, when, name, namespace, payload, crate",
                "`BroadcastEvent` can only be derived for structs, not enums; wrap the enum in a struct",
            ]
        );
    }

    #[test]
    fn failed_derive_emits_errors_and_a_stub() {
        let out = derive(&parse_quote!(
            #[broadcast(name = "", crate = "::bc")]
            struct A;
        ))
        .to_string();
        assert!(out.contains("compile_error !"), "{out}");
        assert!(out.contains("impl :: bc :: BroadcastEvent for A"), "{out}");
        let out = derive(&parse_quote!(
            struct G<T>(T);
        ))
        .to_string();
        assert!(out.contains("compile_error !"), "{out}");
        assert!(!out.contains("impl ::"), "{out}");
    }
}
