// A socket.io-client user of the generated declarations: `tsc --noEmit`
// must accept the correct uses and reject the marked mistakes.
import { io, Socket } from "socket.io-client";
import type {
  ClientToServerEvents,
  ServerToClientEvents,
  MessagePostedPayload,
  GamesServerToClientEvents,
  EventPosition,
  RoomReply,
} from "./generated/events";
import { RecoveringRooms, type JoinReply, type Position } from "../../clients/typescript/recovery";

const socket: Socket<ServerToClientEvents, ClientToServerEvents> = io("http://127.0.0.1:3000", {
  auth: { user: "alice" },
});

socket.on("message_posted", (p: MessagePostedPayload) => {
  const chat: number = p.chat_id;
  const text: string = p.text;
  const tags: string[] = p.tags;
  const edited: string | null | undefined = p.edited_at;
  console.log(chat, text, tags, edited);
});
socket.on("chat_status_changed", (s) => {
  if (s.state === "archived") {
    const by: string = s.by;
    console.log(by);
  }
});
socket.on("error", (e) => {
  if (e.type === "forbidden") console.log(e.room);
  else console.log(e.msg);
});
socket.emit("join_chat", 1, (reply) => {
  if (reply.ok) console.log(reply.room);
  else console.log(reply.error.type);
});
socket.emit("join_chat", { id: 1 });
socket.emit("leave_chat", [1]);
// Recovery by hand: the position after the payload, `since` between the
// data and the ack.
socket.on("message_posted", (p, position?: EventPosition) => {
  if (position) console.log(p.text, position.room, position.offset, position.epoch);
});
socket.emit("join_chat", 1, { since: { offset: 17, epoch: "e" } }, (reply) => {
  if (reply.ok && reply.recovered === false && reply.position) console.log(reply.position.offset);
});
socket.emit("join_chat", 1, {});
// @ts-expect-error: since needs an epoch
socket.emit("join_chat", 1, { since: { offset: 17 } });

// The recovery helper on the same typed socket.
const rooms = new RecoveringRooms(socket, {
  notRecovered: (room: string, at: Position) => console.log(room, at.offset, at.epoch),
});
rooms.on("message_posted", (p, position) => {
  const text: string = p.text;
  const offset: number | undefined = position?.offset;
  console.log(text, offset);
});
rooms.on("joined", (n) => console.log(n.room));
rooms.join("chat", { id: 1 }).then((r: JoinReply) => {
  if (r.ok) console.log(r.room, r.recovered, r.position?.epoch);
});
rooms.join("chat", 1);
rooms.leave("chat", [1]);
console.log(rooms.position("chat|1")?.offset);
// What the server answers is what the helper expects.
const fits = (r: RoomReply): JoinReply => r;
console.log(fits);
// @ts-expect-error: no room `nope`
rooms.join("nope", 1);
// @ts-expect-error: chat's field is `id`
rooms.join("chat", { chat: 1 });
// @ts-expect-error: no such event
rooms.on("no_such_event", () => {});
rooms.on("message_posted", (p) => {
  // @ts-expect-error: text is a string
  const wrong: number = p.text;
  console.log(wrong);
});
// An untyped socket works too, with any key.
const untyped = new RecoveringRooms(io("http://127.0.0.1:3000"));
untyped.join("anything", { x: 1 });
untyped.on("whatever", (...args: unknown[]) => console.log(args));

// @ts-expect-error: no such event
socket.on("no_such_event", () => {});
socket.on("message_posted", (p) => {
  // @ts-expect-error: chat_id is a number
  const wrong: string = p.chat_id;
  console.log(wrong);
});
// @ts-expect-error: unknown state
const bad: Parameters<ServerToClientEvents["chat_status_changed"]>[0] = { state: "melted" };
console.log(bad);

const games: Socket<GamesServerToClientEvents> = io("http://127.0.0.1:3000/games");
games.on("score", (p) => {
  const points: number = p.points;
  console.log(points);
});
