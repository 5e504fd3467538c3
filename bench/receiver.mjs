// Benchmark receiver: answers 200 at once and records when each webhook-id arrived.
// Runs as its own process; the benchmark talks to it over IPC.
import http from 'node:http';

const now = () => performance.timeOrigin + performance.now();
let arrivals = new Map(); // webhook-id → arrival (ms since epoch, sub-ms)
let eventIds = new Map(); // event id → first arrival, for latency
let lastSequence = new Map(); // execution_id → highest sequence arrived, for the order check
let first = null;
let last = null;
let total = 0;
let outOfOrder = 0;
let trackEvents = false;
let trackOrder = false;

/** Counts arrivals whose sequence is below one of the same execution that arrived earlier. */
function checkOrder(body) {
  const { execution_id: execution, sequence } = JSON.parse(body);
  if (execution == null || sequence == null) return;
  const before = lastSequence.get(execution) ?? -Infinity;
  if (sequence < before) outOfOrder++;
  else lastSequence.set(execution, sequence);
}

const server = http.createServer((req, res) => {
  const chunks = trackEvents || trackOrder ? [] : null;
  req.on('data', (c) => chunks?.push(c));
  req.on('end', () => {
    const t = now();
    total++;
    first ??= t;
    last = t;
    const id = req.headers['webhook-id'];
    if (!arrivals.has(id)) arrivals.set(id, t);
    if (chunks) {
      const body = Buffer.concat(chunks).toString('utf8');
      if (trackOrder) checkOrder(body);
      const m = trackEvents && /"id":"([^"]+)"/.exec(body);
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
    lastSequence = new Map();
    first = last = null;
    total = outOfOrder = 0;
    trackEvents = Boolean(msg.trackEvents);
    trackOrder = Boolean(msg.trackOrder);
    process.send({ type: 'reset' });
  } else if (msg.type === 'stats') {
    process.send({ type: 'stats', unique: arrivals.size, total, first, last, outOfOrder });
  } else if (msg.type === 'events') {
    process.send({ type: 'events', arrivals: [...eventIds] });
  } else if (msg.type === 'stop') {
    server.close();
    process.exit(0);
  }
});
