//! The check every adapter request passes before socketioxide sees it.
//!
//! socketioxide-redis decodes a request and hands its packet to the common
//! parser inside the namespace's one adapter task. Some requests that decode
//! fine panic there (`unreachable!` in socketioxide-parser-common for a
//! binary value, an `unwrap` for a Connect packet with a binary payload):
//! the task dies, and remote delivery for that namespace stops on every
//! server while the connection still reports healthy. So the driver lets a
//! packet through only when the parser can serialize it, a text Event (what
//! the framework itself publishes), and drops the rest. Requests without a
//! packet (socketioxide's own remote operations: fetching sockets and rooms,
//! joining, leaving and disconnecting sockets across servers, heartbeats)
//! never reach the parser and pass: applications use them through
//! socketioxide's API, and Redis is trusted with them (see the README's
//! security model).
//!
//! The check walks the same msgpack structure as socketioxide-core's
//! `RequestIn`, field for field and in the same order, and skips everything
//! it does not judge, so it allocates nothing. It may accept what
//! the adapter later refuses (the adapter logs that and carries on); it must
//! never refuse what the framework sends, nor accept what the parser cannot
//! serialize.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Request type of a Broadcast in socketioxide-core's remote protocol.
const REQUEST_BROADCAST: u8 = 0;
/// Request type of a Broadcast whose sender waits for acknowledgements.
const REQUEST_BROADCAST_WITH_ACK: u8 = 1;
/// Request types that carry no packet: disconnect, all rooms, add and
/// delete sockets, fetch sockets, heartbeats.
const REQUESTS_WITHOUT_PACKET: &[u8] = &[2, 3, 4, 5, 6, 20, 21];
/// Packet type of a (text) Event in socketioxide-core's packet encoding.
const PACKET_EVENT: u8 = 2;
/// Value variant of a string (JSON text) in socketioxide-core's `Value`.
const VALUE_STR: u8 = 0;

/// Why a message from Redis was not handed to socketioxide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Larger than any request the framework publishes.
    Oversize { len: usize, max: usize },
    /// Not a msgpack request at all.
    Undecodable,
    /// A request type socketioxide-core does not define.
    RequestType(u8),
    /// A Broadcast without a packet.
    MissingPacket,
    /// A packet other than a text Event (Connect, Disconnect, binary, ack).
    PacketType(u8),
    /// An Event whose value is not text, or carries binary attachments.
    BinaryValue,
    /// A plain Broadcast whose Event asks clients for an acknowledgement.
    AckId,
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Oversize { len, max } => write!(f, "{len} bytes, over the {max} byte limit"),
            Self::Undecodable => f.write_str("not a socketioxide adapter request"),
            Self::RequestType(t) => write!(f, "request type {t} is unknown"),
            Self::MissingPacket => f.write_str("broadcast request without a packet"),
            Self::PacketType(t) => write!(f, "packet type {t} is not a text event"),
            Self::BinaryValue => f.write_str("event with a binary value or attachments"),
            Self::AckId => f.write_str("event asking for an acknowledgement"),
        }
    }
}

/// Nesting a request needs is 4 (request, packet, value, attachments);
/// deeper data is never the framework's and would cost stack to skip.
const MAX_DEPTH: usize = 16;

/// Whether a message on a request channel may go to socketioxide.
///
/// The layout is socketioxide-core's `RawRequest` and `RawPacket`
/// (`adapter/remote_packet.rs`, `packet.rs`) as rmp-serde writes them:
/// structs as arrays, fields in declaration order. Walking the msgpack by
/// hand skips the JSON text (an array of byte values) at a byte a step;
/// serde's `IgnoredAny` visits each element and costs most of a full decode.
pub(crate) fn check_request(data: &[u8]) -> Result<(), Rejection> {
    let mut rd = Reader(data);
    let undecodable = |_| Rejection::Undecodable;
    // [node_id, id, type, packet, rooms, opts, ack_timeout_ms?]
    let fields = rd.array_len().map_err(undecodable)?;
    if !(6..=7).contains(&fields) {
        return Err(Rejection::Undecodable);
    }
    rd.skip(0).map_err(undecodable)?;
    rd.skip(0).map_err(undecodable)?;
    let request_type = rd.small_uint().map_err(undecodable)?;
    match request_type {
        REQUEST_BROADCAST | REQUEST_BROADCAST_WITH_ACK => {}
        t if REQUESTS_WITHOUT_PACKET.contains(&t) => return Ok(()),
        t => return Err(Rejection::RequestType(t)),
    }
    if rd.nil().map_err(undecodable)? {
        return Err(Rejection::MissingPacket);
    }
    // [ns, type, data, ack, error]
    if rd.array_len().map_err(undecodable)? != 5 {
        return Err(Rejection::Undecodable);
    }
    rd.skip(0).map_err(undecodable)?;
    let packet_type = rd.small_uint().map_err(undecodable)?;
    if packet_type != PACKET_EVENT {
        return Err(Rejection::PacketType(packet_type));
    }
    // No data: the adapter refuses it itself ("missing field").
    if rd.nil().map_err(undecodable)? {
        return Err(Rejection::Undecodable);
    }
    // Value: [variant, bytes, attachments]
    if rd.array_len().map_err(undecodable)? != 3 {
        return Err(Rejection::Undecodable);
    }
    if rd.small_uint().map_err(undecodable)? != VALUE_STR {
        return Err(Rejection::BinaryValue);
    }
    rd.skip(0).map_err(undecodable)?;
    if !rd.nil().map_err(undecodable)? {
        return Err(Rejection::BinaryValue);
    }
    // The adapter numbers acks itself for a Broadcast with acks.
    if !rd.nil().map_err(undecodable)? && request_type == REQUEST_BROADCAST {
        return Err(Rejection::AckId);
    }
    // The rest (error, rooms, options) the adapter decodes or refuses; none
    // of it reaches the parser.
    Ok(())
}

/// A msgpack cursor that reads only what the check needs.
struct Reader<'a>(&'a [u8]);

/// The data ended early or is not msgpack.
struct Malformed;

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, Malformed> {
        let (&b, rest) = self.0.split_first().ok_or(Malformed)?;
        self.0 = rest;
        Ok(b)
    }

    fn advance(&mut self, n: usize) -> Result<(), Malformed> {
        self.0 = self.0.get(n..).ok_or(Malformed)?;
        Ok(())
    }

    /// A big-endian length of `width` bytes.
    fn len(&mut self, width: usize) -> Result<usize, Malformed> {
        let bytes = self.0.get(..width).ok_or(Malformed)?;
        self.0 = &self.0[width..];
        Ok(bytes.iter().fold(0usize, |n, &b| (n << 8) | usize::from(b)))
    }

    fn peek(&self) -> Result<u8, Malformed> {
        self.0.first().copied().ok_or(Malformed)
    }

    /// Consumes a nil and says so, or leaves anything else in place.
    fn nil(&mut self) -> Result<bool, Malformed> {
        if self.peek()? == 0xc0 {
            self.0 = &self.0[1..];
            Ok(true)
        } else {
            Ok(false)
        }
    }

    fn array_len(&mut self) -> Result<usize, Malformed> {
        match self.byte()? {
            b @ 0x90..=0x9f => Ok(usize::from(b & 0x0f)),
            0xdc => self.len(2),
            0xdd => self.len(4),
            _ => Err(Malformed),
        }
    }

    /// An integer that fits a `u8`, in any of the encodings serde accepts
    /// for one.
    fn small_uint(&mut self) -> Result<u8, Malformed> {
        let (width, signed) = match self.byte()? {
            b @ 0x00..=0x7f => return Ok(b),
            0xcc => (1, false),
            0xcd => (2, false),
            0xce => (4, false),
            0xcf => (8, false),
            0xd0 => (1, true),
            0xd1 => (2, true),
            0xd2 => (4, true),
            0xd3 => (8, true),
            _ => return Err(Malformed),
        };
        let bytes = self.0.get(..width).ok_or(Malformed)?;
        self.0 = &self.0[width..];
        if signed && bytes[0] & 0x80 != 0 {
            return Err(Malformed);
        }
        let (high, last) = bytes.split_at(width - 1);
        if high.iter().any(|&b| b != 0) {
            return Err(Malformed);
        }
        Ok(last[0])
    }

    /// Skips one value of any type.
    fn skip(&mut self, depth: usize) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        let (items, payload) = match self.byte()? {
            0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => (0, 0),
            b @ 0x80..=0x8f => (2 * usize::from(b & 0x0f), 0),
            b @ 0x90..=0x9f => (usize::from(b & 0x0f), 0),
            b @ 0xa0..=0xbf => (0, usize::from(b & 0x1f)),
            0xc4 | 0xd9 => (0, self.len(1)?),
            0xc5 | 0xda => (0, self.len(2)?),
            0xc6 | 0xdb => (0, self.len(4)?),
            0xc7 => (0, self.len(1)? + 1),
            0xc8 => (0, self.len(2)? + 1),
            0xc9 => (0, self.len(4)? + 1),
            0xcc | 0xd0 => (0, 1),
            0xcd | 0xd1 => (0, 2),
            0xca | 0xce | 0xd2 => (0, 4),
            0xcb | 0xcf | 0xd3 => (0, 8),
            0xd4 => (0, 2),
            0xd5 => (0, 3),
            0xd6 => (0, 5),
            0xd7 => (0, 9),
            0xd8 => (0, 17),
            0xdc => (self.len(2)?, 0),
            0xdd => (self.len(4)?, 0),
            0xde => (2 * self.len(2)?, 0),
            0xdf => (2 * self.len(4)?, 0),
            // 0xc1 is never used.
            _ => return Err(Malformed),
        };
        self.advance(payload)?;
        let mut remaining = items;
        while remaining > 0 {
            // Runs of one-byte integers at once: the JSON text is an array
            // of byte values, mostly ASCII.
            let window = &self.0[..remaining.min(self.0.len())];
            let run = ascii_prefix(window);
            self.0 = &self.0[run..];
            remaining -= run;
            if remaining == 0 {
                break;
            }
            match self.peek()? {
                0xcc => self.advance(2)?,
                _ => self.skip(depth + 1)?,
            }
            remaining -= 1;
        }
        Ok(())
    }
}

/// How many bytes at the start of `bytes` are below 0x80 (one-byte msgpack
/// integers), eight at a time: the request's JSON text is walked once per
/// message on every server, and a byte-at-a-time count was its largest
/// cost (about 1,300 instructions for a 160-byte event).
fn ascii_prefix(bytes: &[u8]) -> usize {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut words = bytes.chunks_exact(8);
    let mut n = 0;
    for chunk in words.by_ref() {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        if u64::from_le_bytes(word) & HIGH != 0 {
            break;
        }
        n += 8;
    }
    n + bytes[n..].iter().take_while(|&&b| b < 0x80).count()
}

/// The largest message handed on: twice the payload limit (rmp-serde writes
/// the JSON text as an array of bytes, two msgpack bytes for each non-ASCII
/// one) plus room for the rooms, exclusions and event name.
pub(crate) fn max_message_bytes(max_payload_bytes: usize) -> usize {
    max_payload_bytes
        .saturating_mul(2)
        .saturating_add(REQUEST_OVERHEAD)
}

/// Allowance above the payload for what a request carries besides it.
const REQUEST_OVERHEAD: usize = 1 << 20;

/// Most one `warn` a second for a kind of drop, so a flood on the channels
/// does not become a flood in the log; the next line says how many were not
/// logged.
#[derive(Debug)]
pub(crate) struct WarnLimiter {
    start: Instant,
    next_ms: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for WarnLimiter {
    fn default() -> Self {
        Self {
            start: Instant::now(),
            next_ms: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl WarnLimiter {
    const INTERVAL_MS: u64 = 1000;

    /// Calls `log` with the number of drops not logged since the last call,
    /// or counts this one as not logged.
    pub(crate) fn warn(&self, log: impl FnOnce(u64)) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        let next = self.next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(Self::INTERVAL_MS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            log(self.suppressed.swap(0, Ordering::Relaxed));
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::collections::VecDeque;

    use proptest::prelude::*;
    use socketioxide_core::adapter::BroadcastOptions;
    use socketioxide_core::adapter::remote_packet::{RequestIn, RequestOut, RequestTypeOut};
    use socketioxide_core::packet::{Packet, PacketData};
    use socketioxide_core::parser::Parse;
    use socketioxide_core::{Str, Uid, Value};
    use socketioxide_parser_common::CommonParser;

    use super::*;

    fn event(ns: &str, json: &str) -> Packet {
        Packet::event(
            Str::from(ns.to_owned()),
            Value::Str(json.to_owned().into(), None),
        )
    }

    fn encode(r#type: RequestTypeOut<'_>, rooms: &[&'static str]) -> Vec<u8> {
        let mut opts = BroadcastOptions::default();
        opts.rooms.extend(rooms.iter().map(|r| Cow::Borrowed(*r)));
        rmp_serde::to_vec(&RequestOut::new(Uid::new(), r#type, &opts)).unwrap()
    }

    fn broadcast(inner: PacketData) -> Vec<u8> {
        let packet = Packet {
            inner,
            ns: Str::from("/".to_owned()),
        };
        encode(RequestTypeOut::Broadcast(&packet), &["chat|1"])
    }

    /// What the adapter does with an accepted request, up to the point where
    /// it serialized the packet for its sockets: this must never panic.
    fn adapter_handles(data: &[u8]) {
        if let Ok(req) = rmp_serde::from_slice::<RequestIn>(data)
            && let socketioxide_core::adapter::remote_packet::RequestTypeIn::Broadcast(p) =
                req.r#type
        {
            let _ = CommonParser.encode(p);
        }
    }

    #[test]
    fn what_the_framework_publishes_passes() {
        let packet = event("/chat", r#"["message_posted",{"text":"h\u00e9"}]"#);
        let data = encode(RequestTypeOut::Broadcast(&packet), &["chat|1", "chat|2"]);
        assert_eq!(check_request(&data), Ok(()));
        let group = crate::target::NamespaceTargets {
            namespace: Cow::Borrowed("/chat"),
            rooms: vec![Cow::Borrowed("chat|1"), Cow::Borrowed("chat|2")],
        };
        let payload =
            serde_json::value::RawValue::from_string("{\"text\":\"h\u{e9}\"}".into()).unwrap();
        let via_publish = crate::redis::publish::encode_request(
            Uid::new(),
            &group,
            &[socketioxide_core::Sid::new()],
            &[Cow::Borrowed("muted")],
            "message_posted",
            &payload,
        )
        .unwrap();
        assert_eq!(check_request(&via_publish), Ok(()));
    }

    #[test]
    fn what_the_parser_cannot_serialize_is_refused() {
        let bytes = || Value::Bytes(vec![1, 2, 3].into());
        let with_bins = Value::Str("[\"e\"]".to_owned().into(), Some(VecDeque::new()));
        let cases = [
            (PacketData::Event(bytes(), None), Rejection::BinaryValue),
            (PacketData::Event(with_bins, None), Rejection::BinaryValue),
            (PacketData::Connect(Some(bytes())), Rejection::PacketType(0)),
            (PacketData::Connect(None), Rejection::PacketType(0)),
            (PacketData::Disconnect, Rejection::PacketType(1)),
            (PacketData::EventAck(bytes(), 1), Rejection::PacketType(3)),
            (
                PacketData::ConnectError("x".into()),
                Rejection::PacketType(4),
            ),
            (
                PacketData::BinaryEvent(bytes(), None),
                Rejection::PacketType(5),
            ),
            (PacketData::BinaryAck(bytes(), 1), Rejection::PacketType(6)),
            (
                PacketData::Event(Value::Str("[\"e\"]".to_owned().into(), None), Some(7)),
                Rejection::AckId,
            ),
        ];
        for (inner, expected) in cases {
            let data = broadcast(inner.clone());
            assert_eq!(check_request(&data), Err(expected), "{inner:?}");
        }
    }

    #[test]
    fn requests_without_a_packet_pass_unknown_types_do_not() {
        let rooms = vec![Cow::Borrowed("r")];
        let packet = event("/", "[\"e\"]");
        let cases = [
            RequestTypeOut::BroadcastWithAck(&packet),
            RequestTypeOut::DisconnectSockets,
            RequestTypeOut::AllRooms,
            RequestTypeOut::AddSockets(&rooms),
            RequestTypeOut::DelSockets(&rooms),
            RequestTypeOut::FetchSockets,
            RequestTypeOut::Heartbeat,
            RequestTypeOut::InitHeartbeat,
        ];
        for r#type in cases {
            let data = encode(r#type, &[]);
            assert_eq!(check_request(&data), Ok(()), "{data:?}");
        }
        // Request type 7 does not exist.
        let mut unknown = encode(RequestTypeOut::FetchSockets, &[]);
        let mut rd = Reader(&unknown);
        assert!(rd.array_len().is_ok() && rd.skip(0).is_ok() && rd.skip(0).is_ok());
        let at = unknown.len() - rd.0.len();
        assert_eq!(unknown[at], 6);
        unknown[at] = 7;
        assert_eq!(check_request(&unknown), Err(Rejection::RequestType(7)));
        assert_eq!(check_request(b""), Err(Rejection::Undecodable));
        assert_eq!(check_request(b"\xc1garbage"), Err(Rejection::Undecodable));
    }

    #[test]
    fn ascii_prefix_stops_at_the_first_high_byte() {
        assert_eq!(ascii_prefix(b""), 0);
        assert_eq!(ascii_prefix(b"abc"), 3);
        assert_eq!(ascii_prefix(&[b'a'; 20]), 20);
        for at in 0..20 {
            let mut bytes = vec![b'a'; 20];
            bytes[at] = 0xcc;
            assert_eq!(ascii_prefix(&bytes), at, "high byte at {at}");
        }
    }

    #[test]
    fn warnings_are_limited_to_one_a_second() {
        let limiter = WarnLimiter::default();
        let mut logged = Vec::new();
        for _ in 0..1000 {
            limiter.warn(|suppressed| logged.push(suppressed));
        }
        assert_eq!(logged, [0]);
        limiter.next_ms.store(0, Ordering::Relaxed);
        limiter.warn(|suppressed| logged.push(suppressed));
        assert_eq!(logged, [0, 999]);
    }

    /// Valid requests of every shape the protocol has, to mutate.
    fn seeds() -> Vec<Vec<u8>> {
        let rooms = vec![Cow::Borrowed("r")];
        let text = || Value::Str("[\"e\",{\"a\":1}]".to_owned().into(), None);
        let bytes = || Value::Bytes(vec![0xff, 0].into());
        let mut seeds: Vec<Vec<u8>> = [
            PacketData::Event(text(), None),
            PacketData::Event(bytes(), None),
            PacketData::Event(text(), Some(3)),
            PacketData::Connect(Some(bytes())),
            PacketData::Connect(Some(text())),
            PacketData::Connect(None),
            PacketData::Disconnect,
            PacketData::EventAck(text(), 2),
            PacketData::ConnectError("e".into()),
            PacketData::BinaryEvent(bytes(), None),
            PacketData::BinaryAck(text(), 1),
        ]
        .into_iter()
        .map(broadcast)
        .collect();
        let packet = event("/", "[\"e\"]");
        seeds.push(encode(RequestTypeOut::BroadcastWithAck(&packet), &["r"]));
        seeds.push(encode(RequestTypeOut::AddSockets(&rooms), &["r"]));
        seeds.push(encode(RequestTypeOut::DisconnectSockets, &[]));
        seeds.push(encode(RequestTypeOut::Heartbeat, &[]));
        // Named (map) encoding, which the adapter also decodes.
        let packet = event("/", "[\"e\"]");
        let opts = BroadcastOptions::default();
        seeds.push(
            rmp_serde::to_vec_named(&RequestOut::new(
                Uid::new(),
                RequestTypeOut::Broadcast(&packet),
                &opts,
            ))
            .unwrap(),
        );
        seeds
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        FlipBit(usize),
        Truncate(usize),
        SetByte(usize, u8),
        Swap(usize, usize),
        Insert(usize, u8),
        Splice(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            4 => any::<usize>().prop_map(Mutation::FlipBit),
            2 => any::<usize>().prop_map(Mutation::Truncate),
            4 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::SetByte(i, b)),
            2 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::Swap(i, j)),
            1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Insert(i, b)),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(i, j)| Mutation::Splice(i, j)),
        ]
    }

    /// A seed with some mutations applied; `Splice` takes a byte range of
    /// another seed, which moves fields between requests.
    fn mutate(seeds: &[Vec<u8>], seed: usize, muts: &[Mutation]) -> Vec<u8> {
        let mut data = seeds[seed % seeds.len()].clone();
        for m in muts {
            let n = data.len().max(1);
            match *m {
                Mutation::FlipBit(i) => {
                    if let Some(b) = data.get_mut((i / 8) % n) {
                        *b ^= 1 << (i % 8);
                    }
                }
                Mutation::Truncate(i) => data.truncate(i % n),
                Mutation::SetByte(i, v) => {
                    if let Some(b) = data.get_mut(i % n) {
                        *b = v;
                    }
                }
                Mutation::Swap(i, j) => {
                    if !data.is_empty() {
                        data.swap(i % n, j % n);
                    }
                }
                Mutation::Insert(i, v) => data.insert(i % (data.len() + 1), v),
                Mutation::Splice(i, j) => {
                    let other = &seeds[j % seeds.len()];
                    let from = i % other.len().max(1);
                    let to = (from + 1 + j % 16).min(other.len());
                    let at = i % (data.len() + 1);
                    let part = other.get(from..to).unwrap_or_default().to_vec();
                    data.splice(at..at, part);
                }
            }
        }
        data
    }

    /// Runs `cases` inputs from `strategy` through the check; whatever
    /// passes goes on through the adapter's decode and the parser. Returns
    /// how many passed.
    fn fuzz<S: Strategy<Value = Vec<u8>>>(strategy: S, cases: u32) -> u64 {
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
            cases,
            failure_persistence: None,
            ..ProptestConfig::default()
        });
        let accepted = AtomicU64::new(0);
        runner
            .run(&strategy, |data| {
                if check_request(&data).is_ok() {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    adapter_handles(&data);
                }
                Ok(())
            })
            .unwrap();
        accepted.into_inner()
    }

    /// 70,000 mutated and 30,000 generated requests: no panic in the check,
    /// and nothing it passes panics the adapter. Run with `--nocapture` for
    /// the counts.
    #[test]
    fn fuzzed_requests_never_pass_what_the_adapter_cannot_serialize() {
        let seeds = seeds();
        let mutated = (any::<usize>(), proptest::collection::vec(mutation(), 1..4))
            .prop_map(move |(seed, muts)| mutate(&seeds, seed, &muts));
        let accepted_mutated = fuzz(mutated, 70_000);
        let accepted_generated = fuzz(generated(), 30_000);
        println!(
            "fuzz: 70000 mutated ({accepted_mutated} passed the check), \
             30000 generated ({accepted_generated} passed)"
        );
        // Both kinds reach the accepting branch, or the property is empty.
        assert!(accepted_mutated > 0 && accepted_generated > 0);
    }

    /// Requests of any request type, packet type, value variant,
    /// attachments and ack, with arbitrary text or bytes.
    fn generated() -> impl Strategy<Value = Vec<u8>> {
        /// `(variant, bytes, attachments)`, as socketioxide-core writes a `Value`.
        type RawValue<'a> = (u8, &'a [u8], &'a Option<Vec<Vec<u8>>>);
        #[derive(serde::Serialize)]
        struct Packet<'a> {
            ns: &'a str,
            r#type: u8,
            data: Option<RawValue<'a>>,
            ack: Option<i64>,
            error: Option<&'a str>,
        }
        #[derive(serde::Serialize)]
        struct Request<'a> {
            node_id: String,
            id: String,
            r#type: u8,
            packet: Option<Packet<'a>>,
            rooms: Option<Vec<&'a str>>,
            opts: Option<BroadcastOptions>,
            ack_timeout_ms: Option<u64>,
        }
        (
            prop_oneof![Just(0u8), Just(1), Just(2), 0u8..=30],
            0u8..=8,
            0u8..=2,
            ".{0,40}",
            proptest::collection::vec(any::<u8>(), 0..40),
            proptest::option::of(proptest::collection::vec(
                proptest::collection::vec(any::<u8>(), 0..4),
                0..3,
            )),
            proptest::option::of(any::<i64>()),
        )
            .prop_map(
                |(request_type, packet_type, variant, text, raw, bins, ack)| {
                    let body: &[u8] = if variant == 0 { text.as_bytes() } else { &raw };
                    let packet = Packet {
                        ns: "/",
                        r#type: packet_type,
                        data: Some((variant, body, &bins)),
                        ack,
                        error: Some("e"),
                    };
                    let request = Request {
                        node_id: Uid::new().to_string(),
                        id: Uid::new().to_string(),
                        r#type: request_type,
                        packet: Some(packet),
                        rooms: Some(vec!["r"]),
                        opts: Some(BroadcastOptions::default()),
                        ack_timeout_ms: None,
                    };
                    rmp_serde::to_vec(&request).unwrap()
                },
            )
    }

    /// Cost of the check next to the adapter's own decode, per message:
    /// `cargo test -p broadcast-core --features redis --release check_cost -- --ignored --nocapture`.
    #[test]
    #[ignore = "timing; run by hand with --nocapture"]
    fn check_cost() {
        let packet = event(
            "/",
            &format!("[\"message_posted\",{{\"text\":\"{}\"}}]", "x".repeat(200)),
        );
        let data = encode(RequestTypeOut::Broadcast(&packet), &["chat|1"]);
        let n = 200_000u32;
        let time = |f: &dyn Fn()| {
            let start = Instant::now();
            for _ in 0..n {
                f();
            }
            start.elapsed() / n
        };
        let check = time(&|| assert!(check_request(std::hint::black_box(&data)).is_ok()));
        let decode = time(&|| {
            assert!(rmp_serde::from_slice::<RequestIn>(std::hint::black_box(&data)).is_ok())
        });
        println!(
            "{} byte request: check {check:?}, adapter decode {decode:?} per message",
            data.len()
        );
    }
}
