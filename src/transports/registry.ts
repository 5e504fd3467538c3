import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { TransportModule, TransportOutcome } from './contract.js';

/** The transports built into the relay; RELAY_TRANSPORTS chooses among them (`exec` only when named). */
export const BUILT_IN_TRANSPORTS = ['http', 'amqp', 'exec'] as const;
export type BuiltInTransport = (typeof BUILT_IN_TRANSPORTS)[number];

const NAME = /^[a-z][a-z0-9_-]{0,31}$/;

/** An operator's transport module that cannot be loaded or breaks the contract: the start stops (exit 2). */
export class TransportLoadError extends Error {
  constructor(
    readonly module: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`transport module ${module}: ${message}`, options);
    this.name = 'TransportLoadError';
  }
}

/** Checks that a module's default export keeps the transport contract (DESIGN.md, "Transports"). */
export function assertTransportModule(value: unknown, source: string, taken: ReadonlySet<string>): TransportModule {
  if (value === null || typeof value !== 'object') {
    throw new TransportLoadError(source, 'its default export must be an object {name, validate, send, close}');
  }
  const m = value as Record<string, unknown>;
  if (typeof m.name !== 'string' || !NAME.test(m.name)) {
    throw new TransportLoadError(source, '`name` must be 1-32 of a-z 0-9 _ - starting with a letter');
  }
  if (taken.has(m.name)) throw new TransportLoadError(source, `the name "${m.name}" is taken by another transport`);
  for (const fn of ['validate', 'send', 'close'] as const) {
    if (typeof m[fn] !== 'function') throw new TransportLoadError(source, `\`${fn}\` must be a function`);
  }
  if (m.check !== undefined && typeof m.check !== 'function') {
    throw new TransportLoadError(source, '`check`, when given, must be a function');
  }
  return m as unknown as TransportModule;
}

/** Imports operator modules (RELAY_TRANSPORT_MODULES), each checked against the contract. */
export async function loadTransportModules(paths: readonly string[], taken: ReadonlySet<string>, cwd = process.cwd()): Promise<TransportModule[]> {
  const names = new Set(taken);
  const loaded: TransportModule[] = [];
  for (const file of paths) {
    const absolute = path.resolve(cwd, file);
    let exported: unknown;
    try {
      exported = ((await import(pathToFileURL(absolute).href)) as { default?: unknown }).default;
    } catch (err) {
      throw new TransportLoadError(file, `cannot be loaded: ${(err as Error).message}`, { cause: err });
    }
    const module = assertTransportModule(exported, file, names);
    names.add(module.name);
    loaded.push(heldToDeadline(module));
  }
  return loaded;
}

/** How long past an attempt's deadline an operator's module may take before its attempt is over. */
export const MODULE_DEADLINE_GRACE_MS = 2_000;

/**
 * An operator's module whose `send` is over by the attempt's deadline (and a little more) even
 * when the module forgets it: a send that never settles would otherwise keep its delivery in
 * flight, its lease renewed and its slots taken, for as long as the process lives. Past that time
 * the attempt is a `TIMEOUT` (retried as any other) and whatever the send does later is ignored.
 * The built-in transports bound their own attempts (one sweep timer, no timer per attempt).
 */
export function heldToDeadline(module: TransportModule): TransportModule {
  return {
    name: module.name,
    validate: (callback) => module.validate(callback),
    ...(module.check ? { check: (callback: Record<string, unknown>) => module.check!(callback) } : {}),
    send(attempt) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<TransportOutcome>((resolve) => {
        timer = setTimeout(
          () =>
            resolve({
              ok: false,
              error: 'TIMEOUT',
              message: `the ${module.name} transport gave no outcome within ${attempt.callback.timeout_ms} ms (and ${MODULE_DEADLINE_GRACE_MS} ms more)`,
            }),
          Math.max(0, attempt.deadline - Date.now()) + MODULE_DEADLINE_GRACE_MS,
        );
      });
      // A module that throws at once is turned into an outcome by the dispatcher, as one whose promise rejects.
      return Promise.race([Promise.resolve().then(() => module.send(attempt)), late]).finally(() => clearTimeout(timer));
    },
    close: () => module.close(),
  };
}

export interface TransportRegistry {
  /** The enabled transport of that name, or undefined. */
  get(name: string): TransportModule | undefined;
  /** Every enabled transport's name: a process claims only deliveries of these. */
  readonly names: readonly string[];
  /** Closes every transport (after the dispatcher has stopped). */
  close(): Promise<void>;
}

export function createTransportRegistry(modules: readonly TransportModule[]): TransportRegistry {
  const byName = new Map(modules.map((m) => [m.name, m]));
  return {
    get: (name) => byName.get(name),
    names: [...byName.keys()],
    async close() {
      await Promise.allSettled(modules.map((m) => m.close()));
    },
  };
}
