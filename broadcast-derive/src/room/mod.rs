//! `#[derive(Room)]`: parse, check everything, then expand or fall back.

mod expand;
mod validate;

use proc_macro2::TokenStream;
use syn::DeriveInput;

use crate::fallback;
use crate::internals::Ctxt;
use crate::internals::ast::{Container, Derive};
use crate::internals::attr::RoomAttrs;

pub fn derive(input: &DeriveInput) -> TokenStream {
    let cx = Ctxt::new();
    let attrs = RoomAttrs::from_ast(&cx, &input.attrs);
    let krate = attrs.krate();
    let room =
        Container::from_ast(&cx, input, Derive::Room).map(|cont| validate::room(&cx, cont, attrs));
    match (cx.check(), room) {
        (Ok(()), Some(room)) => expand::room(&room),
        (Err(err), _) => fallback::room(input, &krate, err),
        // `Container::from_ast` reports why whenever it returns nothing.
        (Ok(()), None) => fallback::room(input, &krate, fallback::unexplained(input)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use syn::parse_quote;

    /// The expansion, or every error message.
    fn derive_room(input: DeriveInput) -> Result<String, Vec<String>> {
        let cx = Ctxt::new();
        let attrs = RoomAttrs::from_ast(&cx, &input.attrs);
        let room = Container::from_ast(&cx, &input, Derive::Room)
            .map(|cont| validate::room(&cx, cont, attrs));
        match cx.check() {
            Ok(()) => Ok(expand::room(&room.unwrap()).to_string()),
            Err(err) => Err(err.into_iter().map(|e| e.to_string()).collect()),
        }
    }

    fn errors(input: DeriveInput) -> Vec<String> {
        derive_room(input).unwrap_err()
    }

    #[test]
    fn server_only_by_default() {
        let out = derive_room(parse_quote!(
            struct ChatRoom(u64);
        ))
        .unwrap();
        assert!(
            out.contains("impl :: broadcast_core :: join :: JoinableRoom for ChatRoom"),
            "{out}"
        );
        assert!(
            out.contains(r#"const KEY : & 'static str = "chat""#),
            "{out}"
        );
        assert!(
            out.contains(r#"const NAMESPACE : & 'static str = "/""#),
            "{out}"
        );
        assert!(
            out.contains(
                "const ACCESS : :: broadcast_core :: join :: Access = :: broadcast_core :: join :: Access :: ServerOnly"
            ),
            "{out}"
        );
        // The trait's own `authorize` denies every client.
        assert!(!out.contains("fn authorize"), "{out}");
        assert_eq!(out.matches("inventory :: submit !").count(), 1, "{out}");
        assert!(
            out.contains(
                r#":: broadcast_core :: registry :: RoomDescriptor :: of :: < ChatRoom > ("ChatRoom") . source"#
            ),
            "{out}"
        );
        assert!(
            out.contains("__data : & :: broadcast_core :: __private :: Value"),
            "{out}"
        );
        assert!(
            out.contains(":: broadcast_core :: __private :: room :: Shape :: Tuple"),
            "{out}"
        );
    }

    #[test]
    fn public_and_authorized_rooms() {
        let out = derive_room(parse_quote!(
            #[room(public, key = "lobby", namespace = "/games")]
            struct Lobby;
        ))
        .unwrap();
        assert!(out.contains("join :: Access :: Public"), "{out}");
        assert!(
            out.contains("ready (:: broadcast_core :: join :: Authorization :: Allow)"),
            "{out}"
        );
        assert!(
            out.contains(r#"const NAMESPACE : & 'static str = "/games""#),
            "{out}"
        );
        assert!(out.contains("Shape :: Unit"), "{out}");

        let out = derive_room(parse_quote!(
            #[room(authorize = Self::can_join, on_join = hi, crate = "::bc")]
            struct Pair {
                a: u64,
                r#type: String,
            }
        ))
        .unwrap();
        assert!(
            out.contains("impl :: bc :: join :: JoinableRoom for Pair"),
            "{out}"
        );
        assert!(
            out.contains(":: bc :: join :: Access :: Authorized"),
            "{out}"
        );
        assert!(
            out.contains(":: bc :: join :: IntoAuthorization :: into_authorization (__value)"),
            "{out}"
        );
        assert!(out.contains("Self :: can_join (__ctx , __room)"), "{out}");
        assert!(
            out.contains("fn on_join (__ctx : & :: bc :: join :: JoinContext"),
            "{out}"
        );
        assert!(
            out.contains(r#"const FIELDS : & 'static [& 'static str] = & ["a" , "type"]"#),
            "{out}"
        );
        assert!(
            out.contains(r#"format ! ("pair|{}|{}" , self . a , self . r#type)"#),
            "{out}"
        );
    }

    #[test]
    fn history_rooms_declare_their_policy() {
        let out = derive_room(parse_quote!(
            #[room(public, history(size = 10, ttl = "1m"))]
            struct Lobby;
        ))
        .unwrap();
        assert!(
            out.contains(
                "const HISTORY : :: broadcast_core :: __private :: Option < :: broadcast_core :: HistoryPolicy > = :: broadcast_core :: __private :: Option :: Some (:: broadcast_core :: HistoryPolicy :: new (10u32 , 60u64))"
            ),
            "{out}"
        );
        let out = derive_room(parse_quote!(
            struct Plain;
        ))
        .unwrap();
        assert!(!out.contains("HISTORY"), "{out}");
    }

    #[test]
    fn rules_and_conflicts() {
        assert_eq!(
            errors(parse_quote!(
                #[room(public, authorize = can_join, key = "", namespace = "chat")]
                struct ChatRoom(#[room(key = "x")] u64);
            )),
            [
                "the room key is empty",
                "a namespace must start with `/`: write `\"/chat\"`",
                "a room is either `public` or has an `authorize` function, not both: remove one",
                "`#[room(...)]` goes on the struct; every field is part of the room's identifier",
            ]
        );
        let long = "k".repeat(broadcast_rules::MAX_KEY_LEN + 1);
        assert_eq!(
            errors(parse_quote!(
                #[room(key = #long)]
                struct A;
            )),
            ["the room key is 65 bytes long, more than the 64 allowed"]
        );
        assert_eq!(
            errors(parse_quote!(
                struct CaféRoom;
            )),
            [
                "the default room key `café` is invalid (a room key may only contain ASCII letters, digits, `_`, `-`, `.` and `:`, not 'é'); set one with `#[room(key = \"...\")]`"
            ]
        );
        // Server-only rooms may still have hooks.
        assert!(
            derive_room(parse_quote!(
                #[room(on_join = hi, on_leave = bye)]
                struct A;
            ))
            .is_ok()
        );
    }

    #[test]
    fn failed_derive_emits_a_server_only_stub() {
        let out = derive(&parse_quote!(
            #[room(key = "")]
            struct A;
        ))
        .to_string();
        assert!(out.contains("compile_error !"), "{out}");
        assert!(
            out.contains("impl :: broadcast_core :: Room for A"),
            "{out}"
        );
        assert!(out.contains("join :: Access :: ServerOnly"), "{out}");
        assert!(
            out.contains(":: broadcast_core :: join :: RoomDataError :: Name"),
            "{out}"
        );
        assert!(!out.contains("fn authorize"), "{out}");
        // A generic room gets only `Room`, whose bounds it can meet.
        let out = derive(&parse_quote!(
            struct G<T>(T);
        ))
        .to_string();
        assert!(out.contains("Room for G < T >"), "{out}");
        assert!(!out.contains("JoinableRoom"), "{out}");
    }
}
