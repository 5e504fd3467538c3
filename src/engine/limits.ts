import type { Outcome } from './transitions.js';

/*
 * How big a workflow may grow. Results, inputs and expression outputs are stored with their
 * task, copied into its events and read back by later expressions, so each is bounded in bytes
 * of JSON; an execution is bounded in task runs, so a loop in a workbook ends.
 */

export interface EngineLimits {
  /** RELAY_MAX_RESULT_BYTES: a task's result, its evaluated input, an execution's input. */
  maxResultBytes: number;
  /** RELAY_MAX_TASKS_PER_EXECUTION: task runs (task records) one execution may create. */
  maxTasksPerExecution: number;
}

export const DEFAULT_ENGINE_LIMITS: EngineLimits = { maxResultBytes: 1024 * 1024, maxTasksPerExecution: 1000 };

/** Bytes of `value` as JSON (UTF-8); undefined counts as null. */
export function jsonBytes(value: unknown): number {
  return Buffer.byteLength(JSON.stringify(value) ?? 'null', 'utf8');
}

const trim = (n: number) => n.toFixed(1).replace(/\.0$/, '');

/** `900 bytes`, `12.5 KiB`, `1.3 MiB`. */
export function describeBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 * 1024) return `${trim(bytes / 1024)} KiB`;
  return `${trim(bytes / (1024 * 1024))} MiB`;
}

/**
 * "result is 1.3 MiB, larger than RELAY_MAX_RESULT_BYTES (1 MiB)"; `bytes` is null when the
 * size is not known because measuring stopped at the limit. Exact byte counts are shown when
 * the rounded sizes would read the same.
 */
export function tooLargeMessage(what: string, bytes: number | null, maxBytes: number): string {
  const limit = describeBytes(maxBytes);
  if (bytes === null) return `${what} is larger than RELAY_MAX_RESULT_BYTES (${limit})`;
  const size = describeBytes(bytes);
  if (size === limit) return `${what} is ${bytes} bytes, larger than RELAY_MAX_RESULT_BYTES (${maxBytes} bytes)`;
  return `${what} is ${size}, larger than RELAY_MAX_RESULT_BYTES (${limit})`;
}

export class ResultTooLargeError extends Error {
  readonly code = 'RESULT_TOO_LARGE';
  constructor(what: string, bytes: number | null, maxBytes: number) {
    super(tooLargeMessage(what, bytes, maxBytes));
    this.name = 'ResultTooLargeError';
  }
}

/** Throws ResultTooLargeError when `value` is more than `maxBytes` of JSON. */
export function assertWithinLimit(what: string, value: unknown, maxBytes: number): void {
  const bytes = jsonBytes(value);
  if (bytes > maxBytes) throw new ResultTooLargeError(what, bytes, maxBytes);
}

/**
 * The outcome that is committed: a result over the limit is a failure of the task instead.
 * Not retryable: the same action gives the same result again, and its side effects happened.
 */
export function boundedOutcome(outcome: Outcome, maxBytes: number): Outcome {
  if (!outcome.ok) return outcome;
  const bytes = jsonBytes(outcome.result);
  return bytes > maxBytes ? { ok: false, error: tooLargeMessage('result', bytes, maxBytes), retryable: false } : outcome;
}

/**
 * Bytes of `value` as JSON, counting a value reached twice (a YAML alias) each time; stops
 * counting once past `maxBytes` and answers null, so the walk costs at most about `maxBytes`
 * steps however far the value would expand.
 */
export function jsonBytesWithin(value: unknown, maxBytes: number): number | null {
  let total = 0;
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (Array.isArray(v)) {
      total += 2 + Math.max(0, v.length - 1);
      for (let i = v.length - 1; i >= 0; i--) stack.push(v[i]);
    } else if (v !== null && typeof v === 'object') {
      const entries = Object.entries(v);
      total += 2 + Math.max(0, entries.length - 1);
      for (const [k, item] of entries) {
        total += jsonBytes(k) + 1;
        stack.push(item);
      }
    } else total += jsonBytes(v);
    if (total > maxBytes) return null;
  }
  return total;
}

/** state_info of an execution that would pass RELAY_MAX_TASKS_PER_EXECUTION. */
export function taskRunLimitMessage(next: string[], runs: number, maxTasks: number): string {
  const names = next.length === 1 ? `task ${next[0]}` : `tasks ${next.join(', ')}`;
  return `starting ${names} would make ${runs} task runs, more than RELAY_MAX_TASKS_PER_EXECUTION (${maxTasks})`;
}
