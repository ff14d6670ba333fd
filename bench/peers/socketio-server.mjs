// Socket.IO 4 peer for switchboard-bench: rooms over the websocket transport only.
//
// Protocol (engine.io v4 / socket.io v5 packets, as the bench's native client speaks them):
//   client `42["join","<room>"]`                         -> joins, then server `42["joined","<room>"]`
//   client `42["pub",{"room":"<room>","data":"<text>"}]` -> every *other* socket in the room
//                                                          gets `42["msg","<text>"]`
// The sender is excluded (`socket.to(room)`), like the plain ws peer; the bench's publishers
// never join a room, so this changes nothing for the scenarios and avoids self-echo if they do.
//
// Binds 127.0.0.1 (io.listen(port) would bind every interface) on the port given as the first
// argument (default 0: any free port) and prints `listening 127.0.0.1:<port>` once bound.

import http from "node:http";
import { Server } from "socket.io";

const port = Number(process.argv[2] ?? 0);
const httpServer = http.createServer((_req, res) => {
  res.writeHead(404).end();
});
const io = new Server(httpServer, {
  transports: ["websocket"],
  allowUpgrades: false,
  serveClient: false,
  perMessageDeflate: false,
  // No HTTP long-polling, so no CORS; keep Socket.IO's default heartbeat (25 s / 20 s).
});

io.on("connection", (socket) => {
  socket.on("join", (room) => {
    if (typeof room !== "string") return;
    socket.join(room);
    socket.emit("joined", room);
  });
  socket.on("pub", (msg) => {
    if (!msg || typeof msg.room !== "string") return;
    socket.to(msg.room).emit("msg", msg.data);
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  const { address, port: bound } = httpServer.address();
  process.stdout.write(`listening ${address}:${bound}\n`);
});
