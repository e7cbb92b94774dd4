// Drives the chat demo with the official socket.io-client, for
// tests/chat_socketio_client.rs. The Rust test sends one JSON request per
// line on stdin and reads JSON lines on stdout:
//
//   {"id":1,"op":"connect","client":"a","auth":{"user":"alice"},"transports":["websocket"],"url":"http://..."}
//     ("url" is optional: $CHAT_URL by default)
//     -> {"id":1,"ok":true,"sid":"..."}  or  {"id":1,"ok":false,"connect_error":"...","data":...}
//   {"id":2,"op":"emit","client":"a","event":"join_chat","args":[{"chat_id":1}],"ack":true}
//     -> {"id":2,"ok":true,"ack":<first ack argument>}   (no "ack" without "ack":true)
//   {"id":3,"op":"disconnect","client":"a"}  -> {"id":3,"ok":true}
//   {"id":4,"op":"exit"}                     -> {"id":4,"ok":true}, then exits 0
//
// Every event a connected client receives is printed as it arrives:
//   {"client":"a","event":"message_posted","args":[{...}]}
// and a disconnect as {"client":"a","disconnected":"<reason>"}.
// The server's URL is $CHAT_URL; a connect's "url" overrides it (several
// servers). Presence frames (presence_*) are printed only for clients that
// connected with "presence":true, so tests about other events see none.

import { createInterface } from "node:readline";
import { io } from "socket.io-client";

const url = process.env.CHAT_URL;
const ACK_TIMEOUT_MS = 15000;
const CONNECT_TIMEOUT_MS = 15000;
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
  return new Promise((resolve) => {
    const opts = { reconnection: false, forceNew: true, timeout: CONNECT_TIMEOUT_MS };
    if (req.auth !== undefined) opts.auth = req.auth;
    if (req.transports) opts.transports = req.transports;
    const socket = io(req.url || url, opts);
    const name = req.client;
    socket.onAny((event, ...args) => {
      if (event.startsWith("presence_") && !req.presence) return;
      out({ client: name, event, args });
    });
    socket.once("connect", () => {
      clients.set(name, socket);
      socket.on("disconnect", (reason) => out({ client: name, disconnected: reason }));
      resolve({ ok: true, sid: socket.id, transport: socket.io.engine.transport.name });
    });
    socket.once("connect_error", (err) => {
      socket.close();
      resolve({
        ok: false,
        connect_error: err.message,
        data: err.data === undefined ? null : err.data,
        // A refusal by the server is final: the client does not retry it.
        active: socket.active,
      });
    });
  });
}

async function handle(req) {
  switch (req.op) {
    case "connect":
      return connect(req);
    case "emit": {
      const socket = clients.get(req.client);
      if (!socket) return { ok: false, error: `no client ${req.client}` };
      const args = req.args || [];
      if (req.ack) {
        const ack = await socket.timeout(ACK_TIMEOUT_MS).emitWithAck(req.event, ...args);
        return { ok: true, ack };
      }
      socket.emit(req.event, ...args);
      return { ok: true };
    }
    case "disconnect": {
      const socket = clients.get(req.client);
      if (socket) socket.disconnect();
      clients.delete(req.client);
      return { ok: true };
    }
    case "exit":
      for (const socket of clients.values()) socket.disconnect();
      clients.clear();
      return { ok: true, exit: true };
    default:
      return { ok: false, error: `unknown op ${req.op}` };
  }
}

if (!url) fatal("CHAT_URL is not set");
const rl = createInterface({ input: process.stdin });
rl.on("line", async (line) => {
  if (!line.trim()) return;
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
// The test went away: stop.
rl.on("close", () => process.exit(0));
