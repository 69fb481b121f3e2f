// Official socket.io-client driven by tests: `node client.mjs URL CONFIG_JSON`.
// Prints one JSON line per thing that happens (open, upgrade, connect, connect_error, event,
// ack, disconnect).
// CONFIG: {auth, emit: [{event, args, ack}] (on the first connect), exitAfterEvents, timeoutMs, transports,
//          withCredentials (Node keeps cookies, e.g. a load balancer's sticky-session cookie),
//          reconnection (default false; true lets the client reconnect by itself),
//          reconnectionDelay (ms, default 100; fixed: no randomization)}
// Commands, one JSON line each on stdin: {cmd: "drop"} closes the transport as a network
// loss would (the client reconnects by itself, with connection-state recovery), {cmd:
// "emit", event, args} emits, {cmd: "auth", auth} replaces what the next CONNECT sends
// (the client adds pid and offset itself), {cmd: "exit"} ends.
import { io } from "socket.io-client";
import { createInterface } from "node:readline";

const url = process.argv[2];
const config = JSON.parse(process.argv[3] || "{}");
const print = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
let received = 0;
let connects = 0;

const socket = io(url, {
  auth: config.auth || {},
  transports: config.transports || ["websocket"],
  withCredentials: config.withCredentials || false,
  reconnection: config.reconnection ?? false,
  reconnectionDelay: config.reconnectionDelay ?? 100,
  reconnectionDelayMax: config.reconnectionDelay ?? 100,
  randomizationFactor: 0,
});
socket.io.on("reconnect_attempt", (attempt) => print({ type: "reconnect_attempt", attempt }));

socket.io.on("open", () => {
  print({ type: "open", transport: socket.io.engine.transport.name });
  socket.io.engine.on("upgrade", (transport) => print({ type: "upgrade", transport: transport.name }));
});
const timer = setTimeout(() => { print({ type: "timeout" }); process.exit(3); },
  config.timeoutMs || 10000);
const done = (code) => { clearTimeout(timer); socket.close(); setTimeout(() => process.exit(code), 50); };

socket.on("connect", async () => {
  const engine = socket.io.engine;
  print({ type: "connect", id: socket.id, engineId: engine.id, transport: engine.transport.name,
          recovered: socket.recovered });
  for (const item of connects++ === 0 ? config.emit || [] : []) {  // first connect only
    if (item.ack) {
      try {
        const response = await socket.timeout(5000).emitWithAck(item.event, ...(item.args || []));
        print({ type: "ack", event: item.event, response });
      } catch (err) {
        print({ type: "ack_error", event: item.event, message: String(err.message || err) });
      }
    } else {
      socket.emit(item.event, ...(item.args || []));
    }
  }
  print({ type: "ready" });
});
socket.on("connect_error", (err) => {
  print({ type: "connect_error", message: err.message, data: err.data ?? null });
  done(0);
});
socket.on("disconnect", (reason) => print({ type: "disconnect", reason }));
socket.onAny((event, ...args) => {
  print({ type: "event", event, args });
  received += 1;
  if (config.exitAfterEvents && received >= config.exitAfterEvents) done(0);
});
createInterface({ input: process.stdin }).on("line", (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "drop") socket.io.engine.close();
  else if (command.cmd === "auth") socket.auth = command.auth;
  else if (command.cmd === "emit") socket.emit(command.event, ...(command.args || []));
  else if (command.cmd === "exit") done(0);
});
