// Plain `ws` peer for switchboard-bench: every text message a client sends goes to every other
// connected client, unchanged. No rooms, no protocol: the cost of Node plus `ws` alone.
//
// Binds 127.0.0.1 on the port given as the first argument (default 0: any free port) and prints
// `listening 127.0.0.1:<port>` once bound.

import http from "node:http";
import { WebSocketServer, WebSocket } from "ws";

const port = Number(process.argv[2] ?? 0);
const httpServer = http.createServer((_req, res) => {
  res.writeHead(426).end();
});
const wss = new WebSocketServer({ server: httpServer, perMessageDeflate: false });

wss.on("connection", (ws) => {
  ws.on("message", (data, isBinary) => {
    if (isBinary) return;
    for (const client of wss.clients) {
      if (client !== ws && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: false });
      }
    }
  });
});

httpServer.listen(port, "127.0.0.1", () => {
  const { address, port: bound } = httpServer.address();
  process.stdout.write(`listening ${address}:${bound}\n`);
});
