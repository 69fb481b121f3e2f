// Many official socket.io-client instances in one Node process (one process per client
// would be hundreds of processes): `node many.mjs URL CONFIG_JSON`.
// CONFIG: {clients: [{url (default URL), auth, orders (subscribed with an ack on the first
//          connect)}], reconnectionDelay (ms, default 1000)}.
// Every client reconnects by itself (`reconnection: true`) with only the built-in
// connection-state recovery: no application resume code.
// Prints JSON lines: {type: "connect", client, id, recovered}, {type: "ready", client, acks}
// (first connect, subscriptions acknowledged), {type: "disconnect", client, reason}.
// Commands, one JSON line each on stdin: {cmd: "count"} prints {type: "count", received:
// {event: count}} (over all clients); {cmd: "report"} prints {type: "client", client, events: [[event,
// eventId, n, offset], ...], connects: [{id, recovered}], attempts: [{pid, offset}] (what each
// reconnect attempt sent: the client's private recovery state, for diagnosis)} per client,
// then {type: "report"};
// {cmd: "exit"} ends.
import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const url = process.argv[2];
const config = JSON.parse(process.argv[3] || "{}");
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const received = {};  // event name -> count over all clients

const clients = config.clients.map((spec, client) => {
  const state = { events: [], connects: [], attempts: [] };
  const socket = io(spec.url || url, {
    auth: spec.auth || {},
    transports: ["websocket"],
    forceNew: true,  // one connection per client, not one multiplexed Manager per URL
    reconnection: true,
    reconnectionDelay: config.reconnectionDelay ?? 1000,
  });
  socket.io.on("reconnect_attempt", () => state.attempts.push(
    { pid: socket._pid ?? null, offset: socket._lastOffset ?? null }));
  socket.on("connect", async () => {
    state.connects.push({ id: socket.id, recovered: socket.recovered });
    print({ type: "connect", client, id: socket.id, recovered: socket.recovered });
    if (state.connects.length > 1) return;
    const acks = [];
    for (const order of spec.orders || []) {
      acks.push(await socket.timeout(10000).emitWithAck("subscribe_order_updates", order)
        .catch((err) => ({ error: String(err.message || err) })));
    }
    print({ type: "ready", client, acks });
  });
  socket.on("connect_error", (err) => print({ type: "connect_error", client, message: err.message }));
  socket.on("disconnect", (reason) => print({ type: "disconnect", client, reason }));
  socket.onAny((event, ...args) => {
    const payload = args[0] || {};
    state.events.push([event, payload.eventId, payload.n, args[args.length - 1]]);
    received[event] = (received[event] || 0) + 1;
  });
  return { socket, state };
});

createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "count") print({ type: "count", received });
  else if (command.cmd === "report") {
    clients.forEach(({ state }, client) => print({ type: "client", client, ...state }));
    print({ type: "report" });
  } else if (command.cmd === "exit") {
    clients.forEach(({ socket }) => socket.close());
    setTimeout(() => process.exit(0), 50);
  }
});
