// Reference server for realtime's benchmarks: Node.js Socket.IO 4 (+ @socket.io/redis-adapter
// when REDIS_URL is set), with the same rooms, event shape and publish API as realtime, so the
// same load client drives both in one run.
//
//   PORT=9000 SECRET=... [REDIS_URL=redis://127.0.0.1:6379] node server.mjs
//
// Clients connect with auth {token} (HS256 JWT, claims sub/roles/exp) and join user:{sub}
// and role:{role}. POST /api/v1/publish takes one event or a list of
// {id, type: "PUSH", event, rooms, data} and emits data + {eventId, position} to the rooms.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT || 9000);
const secret = process.env.SECRET || "change-me";

function verify(token) {
  const [header, payload, signature] = String(token || "").split(".");
  if (!signature) throw new Error("malformed token");
  const expected = createHmac("sha256", secret).update(`${header}.${payload}`).digest();
  const given = Buffer.from(signature, "base64url");
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw new Error("bad signature");
  }
  const claims = JSON.parse(Buffer.from(payload, "base64url").toString());
  if (!claims.sub || !(claims.exp > Date.now() / 1000)) throw new Error("expired");
  return claims;
}

function reply(res, status, body) {
  res.writeHead(status, { "content-type": "application/json" });
  res.end(JSON.stringify(body));
}

let position = 0;
let io;

const http = createServer((req, res) => {
  if (req.method === "GET" && req.url === "/healthz") return reply(res, 200, { status: "ok" });
  if (req.method !== "POST" || req.url !== "/api/v1/publish") return; // socket.io handles the rest
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    try {
      const claims = verify((req.headers.authorization || "").replace(/^Bearer /i, ""));
      if (!(claims.roles || []).includes("service")) return reply(res, 403, { error: "forbidden" });
      const body = JSON.parse(Buffer.concat(chunks).toString());
      const events = Array.isArray(body) ? body : [body];
      for (const e of events) {
        io.to(e.rooms).emit(e.event, { ...e.data, eventId: e.id, position: String(++position) });
      }
      reply(res, 202, { accepted: events.length });
    } catch (err) {
      reply(res, 400, { error: String(err.message || err) });
    }
  });
});

io = new Server(http, { cors: { origin: "*" }, perMessageDeflate: false });
io.use((socket, next) => {
  try {
    socket.data.claims = verify(socket.handshake.auth?.token);
    next();
  } catch (err) {
    next(Object.assign(new Error(err.message), { data: { code: "invalid_token" } }));
  }
});
io.on("connection", (socket) => {
  const { sub, roles = [] } = socket.data.claims;
  socket.join([`user:${sub}`, ...roles.map((r) => `role:${r}`)]);
});

if (process.env.REDIS_URL) {
  const { createClient } = await import("redis");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const pub = createClient({ url: process.env.REDIS_URL });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
}

http.listen(port, "127.0.0.1", () => console.log(`reference listening on ${port}`));
process.on("SIGTERM", () => process.exit(0));
