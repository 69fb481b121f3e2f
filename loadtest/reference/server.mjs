// Reference server for realtime's benchmarks: Node.js Socket.IO 4 (+ @socket.io/redis-adapter
// when REDIS_URL is set), with the same rooms, event shape and publish API as realtime, so the
// same load client drives both in one run.
//
//   PORT=9000 SECRET=... [ENGINE=ws|eiows|uws] [REDIS_URL=redis://127.0.0.1:6379] node server.mjs
//
// ENGINE picks the transport under the same Socket.IO server: `ws` (Node's http + the `ws`
// package, Socket.IO's default), `eiows` (its native WebSocket engine, when it is installed)
// or `uws` (Socket.IO attached to uWebSockets.js with `io.attachApp`; the `uwebsockets`
// npm package republishes its binaries). Every engine listens on loopback only.
//
// Clients connect with auth {token} (HS256 JWT, claims sub/roles/exp) and join user:{sub}
// and role:{role}. POST /api/v1/publish takes one event or a list of
// {id, type: "PUSH", event, rooms, data} and emits data + {eventId, position} to the rooms.
import { createHmac, timingSafeEqual } from "node:crypto";
import { createServer } from "node:http";
import { Server } from "socket.io";

const port = Number(process.env.PORT || 9000);
const secret = process.env.SECRET || "change-me";
const engine = process.env.ENGINE || "ws";

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

// Verify, parse and emit one publish request; returns [status, body].
function publish(authorization, raw) {
  try {
    const claims = verify((authorization || "").replace(/^Bearer /i, ""));
    if (!(claims.roles || []).includes("service")) return [403, { error: "forbidden" }];
    const body = JSON.parse(raw.toString());
    const events = Array.isArray(body) ? body : [body];
    for (const e of events) {
      io.to(e.rooms).emit(e.event, { ...e.data, eventId: e.id, position: String(++position) });
    }
    return [202, { accepted: events.length }];
  } catch (err) {
    return [400, { error: String(err.message || err) }];
  }
}

const options = { cors: { origin: "*" }, perMessageDeflate: false };

function nodeServer() {
  const http = createServer((req, res) => {
    if (req.method === "GET" && req.url === "/healthz") return reply(res, 200, { status: "ok" });
    if (req.method !== "POST" || req.url !== "/api/v1/publish") return; // socket.io handles the rest
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => reply(res, ...publish(req.headers.authorization, Buffer.concat(chunks))));
  });
  return http;
}

async function uwsApp() {
  const { default: uWS } = await import("uwebsockets");
  const app = uWS.App();
  const answer = (res, [status, body]) => res.cork(() => {
    res.writeStatus(`${status}`).writeHeader("content-type", "application/json")
      .end(JSON.stringify(body));
  });
  app.get("/healthz", (res) => answer(res, [200, { status: "ok" }]));
  app.post("/api/v1/publish", (res, req) => {
    const authorization = req.getHeader("authorization");
    const chunks = [];
    res.onAborted(() => { res.aborted = true; });
    res.onData((chunk, last) => {
      chunks.push(Buffer.from(chunk.slice(0)));
      if (last && !res.aborted) answer(res, publish(authorization, Buffer.concat(chunks)));
    });
  });
  io = new Server(options);
  io.attachApp(app);
  return () => new Promise((resolve, reject) => app.listen("127.0.0.1", port,
    (token) => (token ? resolve() : reject(new Error(`cannot listen on ${port}`)))));
}

let listen;
if (engine === "uws") {
  listen = await uwsApp();
} else if (engine === "ws" || engine === "eiows") {
  const http = nodeServer();
  const wsEngine = engine === "eiows" ? (await import("eiows")).Server : undefined;
  io = new Server(http, wsEngine ? { ...options, wsEngine } : options);
  listen = () => new Promise((resolve) => http.listen(port, "127.0.0.1", resolve));
} else {
  throw new Error(`ENGINE must be ws, eiows or uws; got ${engine}`);
}

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

await listen();
console.log(`reference (${engine}) listening on ${port}`);
process.on("SIGTERM", () => process.exit(0));
