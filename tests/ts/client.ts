// A socket.io-client user of the generated declarations: `tsc --noEmit`
// must accept the correct uses and reject the marked mistakes.
import { io, Socket } from "socket.io-client";
import type {
  ClientToServerEvents,
  ServerToClientEvents,
  MessagePostedPayload,
  GamesServerToClientEvents,
} from "./generated/events";

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
