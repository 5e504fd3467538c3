import { Worker } from 'node:worker_threads';
import type { Logger } from 'pino';
import type { MetricsJson } from '../metrics.js';
import type { ClaimedDelivery } from '../store/store.js';

/*
 * The dispatcher on a core of its own: `npm start` (role `all`) runs the dispatcher and its
 * transports in a worker thread with its own database connection, while the main thread serves
 * the API and runs the engine. The thread is a `--role dispatcher` relay without an HTTP server
 * (src/dispatch-worker.ts); the two threads speak only through these messages.
 */

/** Main thread → dispatch thread. */
export type ToDispatchThread =
  | { type: 'wake' }
  | { type: 'stop' }
  | { type: 'metrics'; id: number }
  /** Fresh deliveries committed in the main thread, leased to the thread's dispatcher (Dispatcher.accept). */
  | { type: 'handed'; deliveries: ClaimedDelivery[] };
/** Dispatch thread → main thread. */
export type FromDispatchThread =
  | { type: 'ready'; handoff: { owner: string; leaseMs: number } }
  | { type: 'failed'; message: string }
  | { type: 'metrics'; id: number; metrics: MetricsJson };

/** What the thread needs besides the environment it shares with the process. */
export interface DispatchThreadData {
  /** The port the main thread's server listens on: callbacks to it are refused. */
  port: number;
  logFormat: 'json' | 'pretty';
  /** The room the main thread's appends take slots of to hand deliveries over (handoff-room.ts). */
  handoffRoom: SharedArrayBuffer;
}

export interface DispatchThread {
  /** New deliveries committed in the main thread. */
  wake(): void;
  /** The thread's dispatcher's lease owner and lease, for hand-overs. */
  readonly handoff: { owner: string; leaseMs: number };
  /** Deliveries handed over at commit in the main thread, to the thread's dispatcher. */
  handOver(deliveries: ClaimedDelivery[]): void;
  /** The thread's dispatch metrics (attempts, their durations). */
  metrics(): Promise<MetricsJson>;
  /** Stops it as `Dispatcher.stop` does (attempts in flight finish within the grace) and waits for its end. */
  stop(): Promise<void>;
}

const WORKER_FILE = new URL('../dispatch-worker.js', import.meta.url);
/**
 * The thread's heap limit. V8 sizes an isolate's first collections from its limit: with the
 * default one (a quarter of the machine's memory, up to 4 GiB) the thread lets about 100 MB of
 * garbage pile up before collecting, which the process's resident memory shows. 3 MiB per
 * delivery in flight (1.5 GiB for the default 512) keeps that near 40 MB and still holds the
 * worst the dispatcher can hold: that many deliveries of the largest event (1 MiB), each as its
 * envelope and its rendered body.
 */
export function dispatchHeapLimitMb(maxInFlight: number): number {
  return Math.max(1536, maxInFlight * 3);
}
/** A scrape waits this long for the thread's metrics, then is served without them. */
const METRICS_TIMEOUT_MS = 2_000;
/** Added to the shutdown grace before a thread that does not end is terminated. */
const STOP_MARGIN_MS = 15_000;

/**
 * Starts the thread and resolves once its dispatcher runs (or rejects with why it could not
 * start). `onDied` hears of a thread that ended without being asked to: the process is then
 * no longer whole.
 */
export function startDispatchThread(options: {
  data: DispatchThreadData;
  log: Logger;
  shutdownGraceMs: number;
  /** RELAY_MAX_IN_FLIGHT: what the thread may hold at once sizes its heap. */
  maxInFlight: number;
  onDied: (err: Error) => void;
}): Promise<DispatchThread> {
  const { log } = options;
  const worker = new Worker(WORKER_FILE, { workerData: options.data, resourceLimits: { maxOldGenerationSizeMb: dispatchHeapLimitMb(options.maxInFlight) } });
  let alive = true;
  let stopping = false;
  let nextId = 0;
  const waiting = new Map<number, (m: MetricsJson) => void>();
  const send = (m: ToDispatchThread) => worker.postMessage(m);
  let handing: ClaimedDelivery[] = [];
  const sendHanded = () => {
    const deliveries = handing;
    handing = [];
    if (alive) send({ type: 'handed', deliveries });
  };

  return new Promise((resolve, reject) => {
    let started = false;
    const ended = new Promise<void>((done) => worker.once('exit', () => done()));
    let handoff = { owner: '', leaseMs: 0 };
    worker.on('message', (m: FromDispatchThread) => {
      if (m.type === 'ready') {
        started = true;
        handoff = m.handoff;
        resolve(thread);
      } else if (m.type === 'failed') {
        reject(new Error(`the dispatch thread could not start: ${m.message}`));
      } else if (m.type === 'metrics') {
        waiting.get(m.id)?.(m.metrics);
        waiting.delete(m.id);
      }
    });
    worker.on('error', (err) => {
      alive = false;
      if (!started) reject(err);
      else if (!stopping) options.onDied(err);
    });
    worker.on('exit', (code) => {
      alive = false;
      for (const answer of waiting.values()) answer([]);
      waiting.clear();
      if (!started) reject(new Error(`the dispatch thread ended before it started (exit code ${code})`));
      else if (!stopping) options.onDied(new Error(`the dispatch thread ended (exit code ${code})`));
    });

    const thread: DispatchThread = {
      wake() {
        if (alive && !stopping) send({ type: 'wake' });
      },
      get handoff() {
        return handoff;
      },
      // The appends that one commit answers hand their deliveries over one after the other in
      // the same turn: they cross to the thread as one message (posting a delivery took 8.1 µs
      // alone in a message, 2.9 µs ten to a message). Sent while the thread is stopping too: its
      // dispatcher gives them back to the queue. A thread that is gone has their leases end by
      // themselves.
      handOver(deliveries) {
        if (!alive) return;
        if (handing.length === 0) queueMicrotask(sendHanded);
        for (const d of deliveries) handing.push(d);
      },
      metrics() {
        if (!alive) return Promise.resolve([]);
        const id = ++nextId;
        return new Promise<MetricsJson>((answer) => {
          const timer = setTimeout(() => {
            waiting.delete(id);
            answer([]);
          }, METRICS_TIMEOUT_MS);
          waiting.set(id, (m) => {
            clearTimeout(timer);
            answer(m);
          });
          send({ type: 'metrics', id });
        });
      },
      async stop() {
        if (stopping) return ended;
        stopping = true;
        if (!alive) return;
        send({ type: 'stop' });
        const limit = setTimeout(() => {
          log.error({ graceMs: options.shutdownGraceMs }, 'the dispatch thread did not stop in time; terminating it (its leases expire by themselves)');
          void worker.terminate();
        }, options.shutdownGraceMs + STOP_MARGIN_MS);
        await ended;
        clearTimeout(limit);
      },
    };
  });
}
