// Drives clients/typescript/recovery.js (the shipped helper) on the official
// socket.io-client against the chat demo, for tests/chat_recovery_client.rs.
// One JSON request per line on stdin, each answered by a line with its "id":
//
//   {"op":"connect","client":"a","auth":{"user":"alice"},"url":"http://..."}
//     -> {"ok":true}  (reconnects by itself, as an app's socket does)
//   {"op":"join","client":"a","key":"chat","data":{"chat_id":1}}  -> {"ok":true,"reply":{...}}
//   {"op":"drop","client":"a","offset":2}
//     -> {"ok":true}; the next incoming event with that offset never reaches
//        the helper, as if the server had dropped it for a slow client
//   {"op":"exit"}  -> {"ok":true}, then exits 0
//
// What the helper gives the app, and what the socket sends, as events:
//   {"client":"a","event":"delivered","args":[<payload>, <position>]}  (message_posted)
//   {"client":"a","event":"recovered","args":["chat|1", <position>]}
//   {"client":"a","event":"not_recovered","args":["chat|1", <position>]}
//   {"client":"a","event":"sent","args":["join_chat", <data>, <options>?]}
//   {"client":"a","event":"dropped","args":[<position>]}
//   {"client":"a","event":"connected","args":[]}

import { createInterface } from "node:readline";
import { io } from "socket.io-client";
import { RecoveringRooms } from "../../clients/typescript/recovery.js";

const clients = new Map();

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + "\n");
}

function fatal(err) {
  out({ fatal: String(err && err.stack ? err.stack : err) });
  process.exit(1);
}
process.on("uncaughtException", fatal);
process.on("unhandledRejection", fatal);

function connect(req) {
  const name = req.client;
  const ev = (event, ...args) => out({ client: name, event, args });
  // Short reconnect delays: a test waits for them (bounded by its WAIT).
  const socket = io(req.url, {
    auth: req.auth,
    forceNew: true,
    transports: ["websocket"],
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
  });
  const drops = new Set();
  // Events lost on the way, before the helper: it listens with onAny.
  const onAny = socket.onAny.bind(socket);
  socket.onAny = (listener) =>
    onAny((event, ...args) => {
      const p = args[args.length - 1];
      if (args.length > 1 && p && drops.has(p.offset)) {
        drops.delete(p.offset);
        ev("dropped", p);
        return;
      }
      listener(event, ...args);
    });
  socket.onAnyOutgoing((event, ...args) => {
    if (event.startsWith("join_")) ev("sent", event, ...args.filter((a) => typeof a !== "function"));
  });
  socket.on("connect", () => ev("connected"));
  const rooms = new RecoveringRooms(socket, {
    recovered: (room, position) => ev("recovered", room, position),
    notRecovered: (room, position) => ev("not_recovered", room, position),
    rejoinRefused: (reply) => ev("rejoin_refused", reply),
  });
  rooms.on("message_posted", (payload, position) => ev("delivered", payload, position));
  clients.set(name, { socket, rooms, drops });
  return { ok: true };
}

async function handle(req) {
  const c = clients.get(req.client);
  switch (req.op) {
    case "connect":
      return connect(req);
    case "join":
      return { ok: true, reply: await c.rooms.join(req.key, req.data) };
    case "drop":
      c.drops.add(req.offset);
      return { ok: true };
    case "exit":
      for (const { socket } of clients.values()) socket.disconnect();
      return { ok: true, exit: true };
    default:
      return { ok: false, error: `unknown op ${req.op}` };
  }
}

const rl = createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on("line", (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    const req = JSON.parse(line);
    let reply;
    try {
      reply = await handle(req);
    } catch (err) {
      reply = { ok: false, error: String(err && err.message ? err.message : err) };
    }
    out({ id: req.id, ...reply });
    if (reply.exit) process.exit(0);
  });
});
rl.on("close", () => {
  for (const { socket } of clients.values()) socket.disconnect();
  process.exit(0);
});
