// Benchmark receiver: answers 200 at once and records when each webhook-id arrived.
// Runs as its own process; the benchmark talks to it over IPC.
import http from 'node:http';

const now = () => performance.timeOrigin + performance.now();
let arrivals = new Map(); // webhook-id → arrival (ms since epoch, sub-ms)
let eventIds = new Map(); // event id → first arrival, for latency
let first = null;
let last = null;
let total = 0;
let trackEvents = false;

const server = http.createServer((req, res) => {
  const chunks = trackEvents ? [] : null;
  req.on('data', (c) => chunks?.push(c));
  req.on('end', () => {
    const t = now();
    total++;
    first ??= t;
    last = t;
    const id = req.headers['webhook-id'];
    if (!arrivals.has(id)) arrivals.set(id, t);
    if (chunks) {
      const m = /"id":"([^"]+)"/.exec(Buffer.concat(chunks).toString('utf8'));
      if (m && !eventIds.has(m[1])) eventIds.set(m[1], t);
    }
    res.writeHead(200, { 'content-length': '0' }).end();
  });
});
server.keepAliveTimeout = 60_000;
server.listen(0, '127.0.0.1', () => process.send({ type: 'ready', port: server.address().port }));

process.on('message', (msg) => {
  if (msg.type === 'reset') {
    arrivals = new Map();
    eventIds = new Map();
    first = last = null;
    total = 0;
    trackEvents = Boolean(msg.trackEvents);
    process.send({ type: 'reset' });
  } else if (msg.type === 'stats') {
    process.send({ type: 'stats', unique: arrivals.size, total, first, last });
  } else if (msg.type === 'events') {
    process.send({ type: 'events', arrivals: [...eventIds] });
  } else if (msg.type === 'stop') {
    server.close();
    process.exit(0);
  }
});
