import type { Logger } from 'pino';
import type { BacklogAction, BacklogStep, ListenerStore } from './store.js';

export interface BacklogMoverOptions {
  store: Pick<ListenerStore, 'moveListenerBacklogs'>;
  log: Logger;
  /** How often it looks for backlogs to move while none is moving. */
  idleMs?: number;
}

const WHAT: Record<BacklogAction, string> = {
  hold: 'held (listener disabled)',
  release: 'due again (listener enabled)',
  cancel: 'cancelled (listener deleted)',
};

/** What a finished backlog did, for the log line. */
function whatOf(step: BacklogStep): string {
  if (!step.unorder || step.action === 'cancel') return WHAT[step.action];
  return step.action === 'release'
    ? "due again (ordering turned off: none waits behind its execution's head)"
    : "held (listener disabled), none of them behind its execution's head any more (ordering turned off)";
}

/**
 * Moves the rest of the backlogs that listener changes left (see moveListenerBacklogs): one
 * window per transaction, yielding to other work between windows, until none is left; then
 * looks again every `idleMs`. Any number of processes may run one (each window is one
 * process's); a crash leaves the rest for the next look.
 */
export function startBacklogMover({ store, log, idleMs = 1_000 }: BacklogMoverOptions) {
  let stopped = false;
  let timer: NodeJS.Timeout | null = null;
  let running: Promise<void> = Promise.resolve();
  let failures = 0;

  async function moveAll(): Promise<number> {
    let windows = 0;
    while (!stopped) {
      const step = await store.moveListenerBacklogs(Date.now());
      if (!step) break;
      windows++;
      if (step.done) log.info({ listener: step.listenerId, project: step.project }, `a listener's waiting deliveries are all ${whatOf(step)}`);
      await new Promise((resolve) => setImmediate(resolve));
    }
    return windows;
  }

  function schedule() {
    if (stopped) return;
    timer = setTimeout(() => {
      running = moveAll()
        .then(() => {
          failures = 0;
        })
        .catch((err) => {
          // Said once per spell of failures (a database away says so elsewhere too).
          if (failures++ === 0) log.warn({ err }, 'could not move listener backlogs; trying again');
        })
        .finally(schedule);
    }, idleMs);
    timer.unref();
  }
  schedule();

  return {
    moveAll,
    async stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      await running;
    },
  };
}
