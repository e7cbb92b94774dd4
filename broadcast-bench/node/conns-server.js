// The Node socket.io side of `broadcast-e2e conns`: one socket.io server on a
// free loopback port, no adapter but the default in-memory one. A client
// joins the rooms of its CONNECT `auth` ({"rooms": [...]}) in a middleware,
// as the Rust servers do. socket.io is loaded from the directory given as the
// first argument (the bench installs it there at run time; it is not part of
// the repository).
//
// Control, one line each way (the bench's protocol for its own servers):
//   -> READY <port>
//   <- EMIT <seq offset> <events per room> <rooms> <pad bytes>
//   -> DONE {"sent":N}
// End of stdin: exit.
"use strict";
const path = require("path");
const http = require("http");
const readline = require("readline");
const { Server } = require(path.join(process.argv[2], "node_modules", "socket.io"));

const httpServer = http.createServer();
const io = new Server(httpServer, { transports: ["websocket"] });
io.use((socket, next) => {
  const rooms = socket.handshake.auth && socket.handshake.auth.rooms;
  if (Array.isArray(rooms)) socket.join(rooms);
  next();
});
io.on("connection", () => {});

function nowUs() {
  return Math.round((performance.timeOrigin + performance.now()) * 1000);
}

httpServer.listen(0, "127.0.0.1", () => {
  process.stdout.write(`READY ${httpServer.address().port}\n`);
});

const lines = readline.createInterface({ input: process.stdin });
lines.on("line", (line) => {
  const [cmd, offset, events, rooms, pad] = line.trim().split(/\s+/);
  if (cmd !== "EMIT") return;
  const padding = "x".repeat(Number(pad));
  let sent = 0;
  // Room-major order, as the bench's worker sends.
  for (let seq = 0; seq < Number(events); seq++) {
    for (let room = 0; room < Number(rooms); room++) {
      io.to(`room|${room}`).emit("bench", {
        room,
        seq: Number(offset) + seq,
        ts: nowUs(),
        pad: padding,
      });
      sent++;
    }
  }
  process.stdout.write(`DONE ${JSON.stringify({ sent, failed: 0, send_s: 0 })}\n`);
});
lines.on("close", () => process.exit(0));
