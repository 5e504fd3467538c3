import { describeBytes, jsonBytes } from '../json-size.js';
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

/** state_info of an execution that would pass RELAY_MAX_TASKS_PER_EXECUTION. */
export function taskRunLimitMessage(next: string[], runs: number, maxTasks: number): string {
  const names = next.length === 1 ? `task ${next[0]}` : `tasks ${next.join(', ')}`;
  return `starting ${names} would make ${runs} task runs, more than RELAY_MAX_TASKS_PER_EXECUTION (${maxTasks})`;
}
