//! The Socket.IO v5 wire format of the test client: decoding one packet
//! (after the Engine.IO `4`) and encoding the packets the client sends.
//! Shared with the bench's client, which decodes only what it must.

use std::borrow::Cow;

use serde_json::Value;
use tokio_tungstenite::tungstenite::Bytes;

use super::ClientError;

/// Socket.IO packet type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketKind {
    /// `0` CONNECT
    Connect,
    /// `1` DISCONNECT
    Disconnect,
    /// `2` EVENT
    Event,
    /// `3` ACK
    Ack,
    /// `4` CONNECT_ERROR
    ConnectError,
    /// `5` BINARY_EVENT
    BinaryEvent,
    /// `6` BINARY_ACK
    BinaryAck,
}

impl PacketKind {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            b'0' => Self::Connect,
            b'1' => Self::Disconnect,
            b'2' => Self::Event,
            b'3' => Self::Ack,
            b'4' => Self::ConnectError,
            b'5' => Self::BinaryEvent,
            b'6' => Self::BinaryAck,
            _ => return None,
        })
    }

    fn as_byte(self) -> u8 {
        match self {
            Self::Connect => b'0',
            Self::Disconnect => b'1',
            Self::Event => b'2',
            Self::Ack => b'3',
            Self::ConnectError => b'4',
            Self::BinaryEvent => b'5',
            Self::BinaryAck => b'6',
        }
    }

    /// Whether binary attachments follow this packet.
    pub fn is_binary(self) -> bool {
        matches!(self, Self::BinaryEvent | Self::BinaryAck)
    }
}

/// One decoded Socket.IO packet (the part after the Engine.IO `4`).
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    /// Packet type.
    pub kind: PacketKind,
    /// Namespace, `"/"` when omitted.
    pub ns: String,
    /// Ack id, if any.
    pub id: Option<u64>,
    /// Number of binary attachments (binary packets only).
    pub attachments: usize,
    /// JSON payload, if any.
    pub data: Option<Value>,
}

impl Packet {
    /// Splits an EVENT payload into `(name, args)`; `None` for other packets.
    pub fn into_event(self) -> Option<(String, Vec<Value>)> {
        if !matches!(self.kind, PacketKind::Event | PacketKind::BinaryEvent) {
            return None;
        }
        split_event(self.data?)
    }
}

pub(super) fn split_event(data: Value) -> Option<(String, Vec<Value>)> {
    let Value::Array(mut items) = data else {
        return None;
    };
    if !matches!(items.first(), Some(Value::String(_))) {
        return None;
    }
    // In-place shift: no reallocation of the argument vector.
    match items.remove(0) {
        Value::String(name) => Some((name, items)),
        _ => None,
    }
}

fn malformed(reason: &'static str, packet: &str) -> ClientError {
    ClientError::Malformed {
        reason,
        packet: packet.chars().take(200).collect(),
    }
}

/// `s[from..to]` without a panic path (indices come from ASCII scanning, so this is always `Ok`).
fn slice(s: &str, from: usize, to: usize) -> Result<&str, ClientError> {
    s.get(from..to)
        .ok_or_else(|| malformed("index not on a char boundary", s))
}

/// Parses one Socket.IO packet string (without the Engine.IO `4` prefix).
///
/// Never panics; any deviation from the wire format is `Err(ClientError::Malformed)`
/// (or `Err(ClientError::Json)` for an invalid JSON payload).
pub fn parse_packet(s: &str) -> Result<Packet, ClientError> {
    let bytes = s.as_bytes();
    let Some(&first) = bytes.first() else {
        return Err(malformed("empty packet", s));
    };
    let kind = PacketKind::from_byte(first).ok_or_else(|| malformed("unknown packet type", s))?;
    let mut pos = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        if pos == start || bytes.get(pos) != Some(&b'-') {
            return Err(malformed("missing attachment count", s));
        }
        attachments = slice(s, start, pos)?
            .parse::<usize>()
            .map_err(|_| malformed("attachment count overflow", s))?;
        pos += 1;
    }

    let ns = if bytes.get(pos) == Some(&b'/') {
        let rest = slice(s, pos, s.len())?;
        let len = rest.find(',').unwrap_or(rest.len());
        let ns = slice(rest, 0, len)?;
        if ns.bytes().any(|b| matches!(b, b'{' | b'[' | b'"')) {
            return Err(malformed("invalid namespace", s));
        }
        pos += (len + 1).min(rest.len());
        ns
    } else {
        "/"
    };

    let id_start = pos;
    while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
        pos += 1;
    }
    let id = if pos > id_start {
        Some(
            slice(s, id_start, pos)?
                .parse::<u64>()
                .map_err(|_| malformed("ack id overflow", s))?,
        )
    } else {
        None
    };

    let rest = slice(s, pos, s.len())?;
    let data = if rest.is_empty() {
        None
    } else {
        Some(serde_json::from_str::<Value>(rest)?)
    };

    match kind {
        PacketKind::Event | PacketKind::BinaryEvent => match &data {
            Some(Value::Array(items)) if matches!(items.first(), Some(Value::String(_))) => {}
            _ => return Err(malformed("event payload must be [name, ...args]", s)),
        },
        PacketKind::Ack | PacketKind::BinaryAck => {
            if id.is_none() {
                return Err(malformed("ack without id", s));
            }
            if !matches!(data, Some(Value::Array(_))) {
                return Err(malformed("ack payload must be an array", s));
            }
        }
        PacketKind::Connect => {
            if !matches!(data, None | Some(Value::Object(_))) {
                return Err(malformed("connect payload must be an object", s));
            }
        }
        PacketKind::ConnectError => {
            if !matches!(data, Some(Value::Object(_) | Value::String(_))) {
                return Err(malformed("connect_error payload must be an object", s));
            }
        }
        PacketKind::Disconnect => {}
    }

    Ok(Packet {
        kind,
        ns: ns.to_owned(),
        id,
        attachments,
        data,
    })
}

/// Normalises a namespace: `""` → `"/"`, `"admin"` → `"/admin"`.
pub(super) fn norm_ns(ns: &str) -> Cow<'_, str> {
    if ns.is_empty() {
        Cow::Borrowed("/")
    } else if ns.starts_with('/') {
        Cow::Borrowed(ns)
    } else {
        Cow::Owned(format!("/{ns}"))
    }
}

/// Writes the Engine.IO message prefix, packet type, namespace and ack id.
fn write_header(buf: &mut Vec<u8>, kind: PacketKind, ns: &str, id: Option<u64>) {
    buf.push(b'4');
    buf.push(kind.as_byte());
    if ns != "/" {
        buf.extend_from_slice(ns.as_bytes());
        buf.push(b',');
    }
    if let Some(id) = id {
        buf.extend_from_slice(id.to_string().as_bytes());
    }
}

fn into_text(buf: Vec<u8>) -> Result<String, ClientError> {
    String::from_utf8(buf).map_err(|_| malformed("encoded packet is not utf-8", ""))
}

pub(super) fn encode_event(
    ns: &str,
    event: &str,
    args: &[Value],
    id: Option<u64>,
) -> Result<String, ClientError> {
    let mut buf = Vec::with_capacity(16 + ns.len() + event.len() + 32 * args.len());
    write_header(&mut buf, PacketKind::Event, ns, id);
    buf.push(b'[');
    serde_json::to_writer(&mut buf, event)?;
    for arg in args {
        buf.push(b',');
        serde_json::to_writer(&mut buf, arg)?;
    }
    buf.push(b']');
    into_text(buf)
}

/// Encodes a packet without an ack id, e.g. a namespace CONNECT with its
/// `auth` payload, Engine.IO `4` prefix included.
pub fn encode_simple(
    kind: PacketKind,
    ns: &str,
    data: Option<&Value>,
) -> Result<String, ClientError> {
    let mut buf = Vec::with_capacity(8 + ns.len());
    write_header(&mut buf, kind, ns, None);
    if let Some(data) = data {
        serde_json::to_writer(&mut buf, data)?;
    }
    into_text(buf)
}

/// Replaces `{"_placeholder":true,"num":n}` with attachment `n` as an array of bytes.
pub(super) fn fill_placeholders(v: &mut Value, bins: &[Bytes]) {
    let replacement = match v {
        Value::Array(items) => {
            for item in items {
                fill_placeholders(item, bins);
            }
            return;
        }
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                map.get("num")
                    .and_then(Value::as_u64)
                    .and_then(|n| usize::try_from(n).ok())
                    .and_then(|n| bins.get(n))
                    .map(|b| Value::Array(b.iter().map(|&x| Value::from(x)).collect()))
            } else {
                for item in map.values_mut() {
                    fill_placeholders(item, bins);
                }
                return;
            }
        }
        _ => return,
    };
    if let Some(r) = replacement {
        *v = r;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_connect_root_and_ns() {
        let p = parse_packet(r#"0{"sid":"abc"}"#).unwrap();
        assert_eq!(p.kind, PacketKind::Connect);
        assert_eq!(p.ns, "/");
        assert_eq!(p.id, None);
        assert_eq!(p.data, Some(json!({"sid": "abc"})));

        let p = parse_packet(r#"0/admin,{"sid":"x"}"#).unwrap();
        assert_eq!(p.ns, "/admin");
        assert_eq!(p.data, Some(json!({"sid": "x"})));

        let p = parse_packet("0").unwrap();
        assert_eq!((p.ns.as_str(), p.data), ("/", None));
    }

    #[test]
    fn parse_events_and_ack_ids() {
        let p = parse_packet(r#"2["hello",1,{"a":[2]}]"#).unwrap();
        assert_eq!(
            (p.kind, p.ns.as_str(), p.id),
            (PacketKind::Event, "/", None)
        );
        let (name, args) = p.into_event().unwrap();
        assert_eq!(name, "hello");
        assert_eq!(args, vec![json!(1), json!({"a": [2]})]);

        let p = parse_packet(r#"2/admin,["x"]"#).unwrap();
        assert_eq!((p.ns.as_str(), p.id), ("/admin", None));
        assert_eq!(p.into_event().unwrap(), ("x".to_owned(), vec![]));

        let p = parse_packet(r#"212["x","y"]"#).unwrap();
        assert_eq!((p.ns.as_str(), p.id), ("/", Some(12)));

        let p = parse_packet(r#"2/admin,12["x"]"#).unwrap();
        assert_eq!((p.ns.as_str(), p.id), ("/admin", Some(12)));

        let p = parse_packet(r#"312["ok",3]"#).unwrap();
        assert_eq!((p.kind, p.id), (PacketKind::Ack, Some(12)));
        assert_eq!(p.data, Some(json!(["ok", 3])));

        let p = parse_packet("3/admin,0[]").unwrap();
        assert_eq!((p.ns.as_str(), p.id), ("/admin", Some(0)));
        assert!(p.into_event().is_none());
    }

    #[test]
    fn parse_connect_error_and_disconnect() {
        let p = parse_packet(r#"4{"message":"nope"}"#).unwrap();
        assert_eq!(p.kind, PacketKind::ConnectError);
        assert_eq!(p.data, Some(json!({"message": "nope"})));

        let p = parse_packet(r#"4/admin,{"message":"no","data":{"code":7}}"#).unwrap();
        assert_eq!(p.ns, "/admin");
        assert_eq!(p.data, Some(json!({"message": "no", "data": {"code": 7}})));

        let p = parse_packet("1").unwrap();
        assert_eq!((p.kind, p.ns.as_str()), (PacketKind::Disconnect, "/"));
        let p = parse_packet("1/admin,").unwrap();
        assert_eq!(p.ns, "/admin");
        let p = parse_packet("1/admin").unwrap();
        assert_eq!(p.ns, "/admin");
    }

    #[test]
    fn parse_binary() {
        let p = parse_packet(r#"51-/admin,7["bin",{"_placeholder":true,"num":0}]"#).unwrap();
        assert_eq!(p.kind, PacketKind::BinaryEvent);
        assert_eq!((p.attachments, p.ns.as_str(), p.id), (1, "/admin", Some(7)));

        let mut data = p.data.unwrap();
        fill_placeholders(&mut data, &[Bytes::from_static(&[1, 2, 255])]);
        assert_eq!(data, json!(["bin", [1, 2, 255]]));

        let p = parse_packet(r#"62-3[{"_placeholder":true,"num":1}]"#).unwrap();
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (PacketKind::BinaryAck, 2, Some(3))
        );
    }

    #[test]
    fn parse_malformed_is_err() {
        let bad = [
            "",
            "9",
            "x[]",
            "2",
            "2[",
            "2[]",
            "2[1]",
            r#"2{"a":1}"#,
            "2/admin,",
            r#"2/admin{"x":1},["a"]"#,
            "3[]",
            "31",
            r#"31{"a":1}"#,
            "099999999999999999999999[]",
            "399999999999999999999999[]",
            "5[\"a\"]",
            "5-[\"a\"]",
            "599999999999999999999999-[\"a\"]",
            "4",
            "44",
            "0[1]",
            r#"2["a"]trailing"#,
            "2\u{e9}",
            "/",
        ];
        for s in bad {
            assert!(parse_packet(s).is_err(), "expected error for {s:?}");
        }
    }

    #[test]
    fn parse_never_panics_on_prefixes() {
        let full = r#"51-/ns,12["ev",{"_placeholder":true,"num":0},"é"]"#;
        for (i, _) in full.char_indices() {
            let _ = parse_packet(&full[..i]);
            let _ = parse_packet(&full[i..]);
        }
    }

    #[test]
    fn encode_packets() {
        assert_eq!(
            encode_event("/", "hi", &[json!(1), json!("a")], None).unwrap(),
            r#"42["hi",1,"a"]"#
        );
        assert_eq!(
            encode_event("/admin", "hi", &[], Some(12)).unwrap(),
            r#"42/admin,12["hi"]"#
        );
        assert_eq!(encode_simple(PacketKind::Connect, "/", None).unwrap(), "40");
        assert_eq!(
            encode_simple(PacketKind::Connect, "/admin", Some(&json!({"token": "x"}))).unwrap(),
            r#"40/admin,{"token":"x"}"#
        );
        assert_eq!(
            encode_simple(PacketKind::Disconnect, "/admin", None).unwrap(),
            "41/admin,"
        );
        assert_eq!(norm_ns("admin"), "/admin");
        assert_eq!(norm_ns(""), "/");
    }
}
