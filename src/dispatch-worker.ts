import { parentPort, workerData } from 'node:worker_threads';
import { loadConfig } from './config.js';
import type { DispatchThreadData, FromDispatchThread, ToDispatchThread } from './dispatch/thread.js';
import { createLogger } from './log.js';
import { startRelay } from './relay.js';

/*
 * The dispatch thread of a role `all` process (src/dispatch/thread.ts): a `--role dispatcher`
 * relay with its own database connection and transports, and no HTTP server. It reads the same
 * RELAY_* environment as the main thread, which validated it before starting this thread.
 */

const port = parentPort!;
const data = workerData as DispatchThreadData;
const send = (m: FromDispatchThread) => port.postMessage(m);

const config = { ...loadConfig(process.env, false), port: data.port, logFormat: data.logFormat };
const log = createLogger(config.logLevel, config.logFormat, { sync: true }).child({ thread: 'dispatch' });

try {
  const relay = await startRelay(config, log, { role: 'dispatcher', inDispatchThread: true, handoffRoom: data.handoffRoom });
  const dispatcher = relay.dispatcher!;
  port.on('message', (m: ToDispatchThread) => {
    if (m.type === 'wake') relay.wakeDispatcher();
    else if (m.type === 'handed') dispatcher.accept(m.deliveries);
    else if (m.type === 'metrics') {
      relay.dispatchMetrics().then(
        (metrics) => send({ type: 'metrics', id: m.id, metrics }),
        () => send({ type: 'metrics', id: m.id, metrics: [] }),
      );
    } else if (m.type === 'stop') {
      void relay.close().finally(() => process.exit(0));
    }
  });
  send({ type: 'ready', handoff: { owner: dispatcher.handoff.owner, leaseMs: dispatcher.handoff.leaseMs } });
} catch (err) {
  log.fatal({ err }, 'the dispatch thread could not start');
  send({ type: 'failed', message: (err as Error).message });
  process.exit(1);
}
