/**
 * Recovery for broadcast rooms that keep history, on top of socket.io-client.
 *
 * A {@link RecoveringRooms} wraps a socket.io-client `Socket`. Rooms joined
 * through it are joined again on every reconnect (to this server or another)
 * with `{"since": <last position>}`, so the server replays what the socket
 * missed; the events reach the app's listeners once each, in the order of
 * their room's offsets. When the server cannot replay (the history was lost
 * or trimmed past the socket's position), the app is told, so it reloads its
 * state.
 *
 * ```ts
 * const socket = io(url, { auth });
 * const rooms = new RecoveringRooms(socket, {
 *   notRecovered: (room) => reloadFromHttp(room),
 * });
 * rooms.on("message_posted", (message, position) => show(message));
 * await rooms.join("chat", { chat_id: 1 });
 * ```
 *
 * The only runtime dependency is the socket it is given: the import below is
 * erased, so the compiled `recovery.js` runs as is in a browser next to
 * socket.io-client's bundle.
 *
 * @module
 */

// recovery.js is this file compiled (`tsc -p clients/typescript` with
// tests/ts's tsc); tests/typescript.rs fails when they differ.

import type { Socket } from "socket.io-client";

/** A place in a room's event stream: the last event's offset (0 before the first) and the stream's epoch. */
export interface Position {
  offset: number;
  epoch: string;
}

/** The argument after the payload of an event delivered to a room that keeps history. */
export interface EventPosition extends Position {
  room: string;
}

/**
 * The reply to a join: the generated `RoomReply` is assignable to it.
 * `recovered` is there when the join sent `since`.
 */
export type JoinReply =
  | { ok: true; room: string; recovered?: boolean; position?: Position }
  | { ok: false; error: { type: string; msg?: string; room?: string; key?: string } };

/** Event name to listener type, as socket.io-client's event maps. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type EventsMap = Record<string, any>;

/** The room keys of `join_<key>` events in `C` (any string for untyped sockets). */
export type JoinKey<C extends EventsMap> = string extends keyof C
  ? string
  : { [E in keyof C & string]: E extends `join_${infer K}` ? K : never }[keyof C & string];

/** What `join_<K>` takes as its data. */
export type JoinData<C extends EventsMap, K extends string> = string extends keyof C
  ? unknown
  : C[`join_${K}`] extends (data: infer D, ...rest: infer _R) => void
    ? D
    : never;

/** What the app is told besides events. */
export interface RecoveryHandlers {
  /**
   * `room` could not be recovered: some of its events were missed for good
   * (the server's history was lost or no longer reaches back to the last
   * event this socket had). Reload the room's state; events after `position`
   * follow as usual.
   */
  notRecovered?: (room: string, position: Position) => void;
  /**
   * `room` was joined again after a reconnect (or to fill a gap) and every
   * event missed in it was delivered: the app's view of it is whole.
   */
  recovered?: (room: string, position: Position) => void;
  /**
   * A room joined through the helper was refused when it was joined again
   * after a reconnect (the user lost access, say): it is no longer joined.
   */
  rejoinRefused?: (reply: JoinReply) => void;
}

/** A join made through the helper, joined again on every reconnect. */
interface Join {
  event: string;
  data: unknown;
  /** The room's name, from its first ack. */
  room?: string;
  /** Whether a join request is unanswered on the current connection. */
  inFlight: boolean;
  /** Callers of `join` waiting for a first ack. */
  waiting: Array<(reply: JoinReply) => void>;
}

/** A history room's stream as this socket has delivered it. */
interface Stream {
  /** The last event delivered to the app, or the position joined at. */
  last: Position;
  /** Events past a gap, by offset, held until the gap is filled. */
  ahead: Map<number, { event: string; args: unknown[]; position: EventPosition }>;
  /** Gap fills asked for in a row without the gap closing. */
  resyncs: number;
}

/** Gap fills tried in a row before telling the app the room was not recovered. */
const MAX_RESYNCS = 3;
/** Wait before asking again after a `rate_limited` refusal. */
const RATE_LIMIT_RETRY_MS = 1000;

/**
 * Joins rooms on a socket.io-client socket and keeps them recovered across
 * reconnects: see the module documentation.
 *
 * `S` and `C` are the socket's event maps (the generated
 * `ServerToClientEvents` and `ClientToServerEvents`), which type
 * {@link on} and {@link join}.
 *
 * Listen through {@link on}, not `socket.on`, for events of rooms joined
 * through the helper: `socket.on` also sees the duplicates a recovery
 * may bring.
 */
export class RecoveringRooms<S extends EventsMap = EventsMap, C extends EventsMap = EventsMap> {
  private readonly socket: Socket;
  private readonly handlers: RecoveryHandlers;
  private readonly joins = new Map<string, Join>();
  private readonly streams = new Map<string, Stream>();
  private readonly listeners = new Map<string, Array<(...args: unknown[]) => void>>();
  /** Counts connections, so that answers meant for an older one are ignored. */
  private connection = 0;
  private readonly onConnect = () => {
    this.connection += 1;
    for (const join of this.joins.values()) {
      join.inFlight = false;
      this.send(join);
    }
  };
  private readonly onAnyEvent = (event: string, ...args: unknown[]) => this.receive(event, args);

  /** Wraps `socket`, connected or not; rooms are joined once it connects. */
  constructor(socket: Socket<S, C>, handlers: RecoveryHandlers = {}) {
    // The helper emits join events by name, whatever the socket's types.
    this.socket = socket as unknown as Socket;
    this.handlers = handlers;
    this.socket.on("connect", this.onConnect);
    this.socket.onAny(this.onAnyEvent);
  }

  /**
   * Calls `listener` with each `event` once, in its room's order, with the
   * event's position when its room keeps history. Events of rooms without
   * history, and the protocol's own (`joined`, `left`, `error`), are passed
   * on as they arrive.
   */
  on<E extends keyof S & string>(event: E, listener: S[E]): this {
    const list = this.listeners.get(event) ?? [];
    list.push(listener as (...args: unknown[]) => void);
    this.listeners.set(event, list);
    return this;
  }

  /**
   * Joins room `key` with `data` (emits `join_<key>`), now or when the socket
   * connects, and again after every reconnect. Resolves with the first reply;
   * a refused join is forgotten.
   */
  join<K extends JoinKey<C>>(key: K, data: JoinData<C, K>): Promise<JoinReply> {
    const event = `join_${key}`;
    const id = joinId(event, data);
    let join = this.joins.get(id);
    if (!join) {
      join = { event, data, inFlight: false, waiting: [] };
      this.joins.set(id, join);
    }
    const j = join;
    const reply = new Promise<JoinReply>((resolve) => j.waiting.push(resolve));
    if (this.socket.connected && !j.inFlight) this.send(j);
    return reply;
  }

  /**
   * Leaves room `key` (emits `leave_<key>` with `data`) and stops joining it
   * on reconnects. Resolves with the server's reply, or `undefined` when the
   * socket is not connected (it left the room when it disconnected).
   */
  leave<K extends JoinKey<C>>(key: K, data: JoinData<C, K>): Promise<JoinReply | undefined> {
    const join = this.joins.get(joinId(`join_${key}`, data));
    this.joins.delete(joinId(`join_${key}`, data));
    if (join?.room) this.forget(join.room);
    if (!this.socket.connected) return Promise.resolve(undefined);
    return new Promise((resolve) =>
      this.socket.emit(`leave_${key}`, data, (reply: JoinReply) => {
        // The room may have been joined with its data in another form
        // (`1` and `{chat_id: 1}`): the server's name for it says.
        if (reply.ok) this.forget(reply.room);
        resolve(reply);
      }),
    );
  }

  /** Stops rejoining `room` and forgets its stream. */
  private forget(room: string): void {
    for (const [id, join] of this.joins) if (join.room === room) this.joins.delete(id);
    this.streams.delete(room);
  }

  /** The last position delivered in `room` (a room name, `chat|1`), if any. */
  position(room: string): Position | undefined {
    const s = this.streams.get(room);
    return s && { ...s.last };
  }

  /** Stops listening to the socket; the socket itself is left as it is. */
  close(): void {
    this.socket.off("connect", this.onConnect);
    this.socket.offAny(this.onAnyEvent);
    this.joins.clear();
    this.streams.clear();
  }

  /** Emits `join`, with `since` when its room has a position. */
  private send(join: Join): void {
    join.inFlight = true;
    const connection = this.connection;
    const ack = (reply: JoinReply) => {
      if (connection !== this.connection) return;
      join.inFlight = false;
      this.answered(join, reply);
    };
    const last = join.room === undefined ? undefined : this.streams.get(join.room)?.last;
    if (last) {
      this.socket.emit(join.event, join.data, { since: { offset: last.offset, epoch: last.epoch } }, ack);
    } else {
      this.socket.emit(join.event, join.data, ack);
    }
  }

  private answered(join: Join, reply: JoinReply): void {
    const first = join.waiting.splice(0);
    const id = joinId(join.event, join.data);
    if (this.joins.get(id) !== join) {
      // Left (or closed) while the join was on its way.
      first.forEach((resolve) => resolve(reply));
      return;
    }
    if (!reply.ok) {
      if (reply.error.type === "rate_limited") {
        // Joins were asked too fast (many gap fills): ask again later.
        join.waiting.push(...first);
        setTimeout(() => {
          if (this.joins.get(id) === join && this.socket.connected && !join.inFlight) this.send(join);
        }, RATE_LIMIT_RETRY_MS);
        return;
      }
      const wasJoined = join.room !== undefined;
      this.joins.delete(id);
      if (join.room) this.streams.delete(join.room);
      first.forEach((resolve) => resolve(reply));
      if (wasJoined) this.handlers.rejoinRefused?.(reply);
      return;
    }
    join.room = reply.room;
    const position = reply.position;
    if (position) {
      const stream = this.stream(reply.room, position);
      const at = { offset: position.offset, epoch: position.epoch };
      if (reply.recovered === false) {
        // Nothing was replayed: what was missed is in the state the app
        // reloads, as of `position`.
        stream.last = at;
        stream.resyncs = 0;
        this.handlers.notRecovered?.(reply.room, { ...at });
      } else if (
        reply.recovered === undefined &&
        (stream.last.epoch !== at.epoch || stream.last.offset < at.offset)
      ) {
        // A join without `since`: the room's events start after `position`.
        stream.last = at;
      }
      this.drain(reply.room, stream, true);
      if (reply.recovered === true && stream.ahead.size === 0) {
        this.handlers.recovered?.(reply.room, { ...stream.last });
      }
    }
    first.forEach((resolve) => resolve(reply));
  }

  private stream(room: string, at: Position): Stream {
    let s = this.streams.get(room);
    if (!s) {
      s = { last: { offset: at.offset, epoch: at.epoch }, ahead: new Map(), resyncs: 0 };
      this.streams.set(room, s);
    }
    return s;
  }

  private receive(event: string, args: unknown[]): void {
    const position = args.length >= 2 ? asEventPosition(args[args.length - 1]) : undefined;
    if (!position) {
      this.deliver(event, args);
      return;
    }
    // The first event of a room whose join is not answered yet: the room's
    // stream starts just before it.
    const s = this.stream(position.room, { offset: position.offset - 1, epoch: position.epoch });
    const sameEpoch = position.epoch === s.last.epoch;
    if (sameEpoch && position.offset <= s.last.offset) return; // a duplicate
    if ((sameEpoch && position.offset === s.last.offset + 1) || !this.joinOf(position.room)) {
      // Next in order; or a room this helper did not join (the server put
      // the socket in it), which it cannot ask to replay.
      s.last = { offset: position.offset, epoch: position.epoch };
      s.resyncs = 0;
      this.deliver(event, args);
      this.drain(position.room, s, false);
      return;
    }
    // A gap, or another epoch (the history was lost): hold it and ask the
    // server for what is between.
    s.ahead.set(position.offset, { event, args, position });
    this.resync(position.room);
  }

  /**
   * Delivers the held events that follow the last delivered one. After a
   * join's answer, held events of another epoch are dropped (the answer's
   * epoch is the room's), and a gap still open asks for another fill; after
   * {@link MAX_RESYNCS} fills in a row the app is told and the helper goes
   * on from the first held event.
   */
  private drain(room: string, s: Stream, afterAnswer: boolean): void {
    for (const [offset, held] of s.ahead) {
      const sameEpoch = held.position.epoch === s.last.epoch;
      if ((sameEpoch && offset <= s.last.offset) || (!sameEpoch && afterAnswer)) s.ahead.delete(offset);
    }
    for (;;) {
      const next = s.ahead.get(s.last.offset + 1);
      if (!next || next.position.epoch !== s.last.epoch) break;
      s.ahead.delete(next.position.offset);
      s.last = { offset: next.position.offset, epoch: next.position.epoch };
      this.deliver(next.event, next.args);
    }
    if (!afterAnswer || s.ahead.size === 0) return;
    s.resyncs += 1;
    if (s.resyncs <= MAX_RESYNCS) {
      this.resync(room);
      return;
    }
    const held = [...s.ahead.values()].sort((a, b) => a.position.offset - b.position.offset);
    s.resyncs = 0;
    s.last = { offset: held[0]!.position.offset - 1, epoch: s.last.epoch };
    this.handlers.notRecovered?.(room, { ...s.last });
    this.drain(room, s, false);
  }

  private joinOf(room: string): Join | undefined {
    for (const join of this.joins.values()) if (join.room === room) return join;
    return undefined;
  }

  /** Joins `room` again with `since`, unless a join of it is on its way. */
  private resync(room: string): void {
    const join = this.joinOf(room);
    if (join && !join.inFlight && this.socket.connected) this.send(join);
  }

  private deliver(event: string, args: unknown[]): void {
    for (const listener of this.listeners.get(event) ?? []) listener(...args);
  }
}

/** One key per join event and data: joining twice is one join. */
function joinId(event: string, data: unknown): string {
  return `${event} ${JSON.stringify(data ?? null)}`;
}

function asEventPosition(v: unknown): EventPosition | undefined {
  if (typeof v !== "object" || v === null) return undefined;
  const p = v as Record<string, unknown>;
  const keys = Object.keys(p);
  if (keys.length !== 3) return undefined;
  if (typeof p.room !== "string" || typeof p.epoch !== "string") return undefined;
  if (typeof p.offset !== "number" || !Number.isInteger(p.offset)) return undefined;
  return { room: p.room, offset: p.offset, epoch: p.epoch };
}
