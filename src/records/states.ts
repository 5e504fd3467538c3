/**
 * The domain's records and their states, shared by the store (which keeps them), the engine
 * and the dispatcher (which change them) and the API (which shows them). Nothing here knows
 * about a database.
 */

export const DELIVERY_STATUSES = ['pending', 'succeeded', 'failed', 'cancelled'] as const;
export type DeliveryStatus = (typeof DELIVERY_STATUSES)[number];

/** States of an execution (Mistral's, as far as this engine reaches them). */
export const EXECUTION_STATES = ['IDLE', 'RUNNING', 'PAUSED', 'SUCCESS', 'ERROR', 'CANCELLED'] as const;
export type ExecutionState = (typeof EXECUTION_STATES)[number];

export const TASK_STATES = ['IDLE', 'WAITING', 'RUNNING', 'DELAYED', 'PAUSED', 'SUCCESS', 'ERROR', 'CANCELLED', 'SKIPPED'] as const;
export type TaskState = (typeof TASK_STATES)[number];

/** Operations on an execution that can wait for actions in flight. */
export type ExecutionOperation = 'cancel' | 'pause';

export interface DeliveryRecord {
  id: string;
  event_id: string;
  /** The event's type and workbook, read with the delivery so a list needs no lookups per row. */
  event_type: string;
  workbook: string | null;
  listener_id: string;
  status: DeliveryStatus;
  attempt_count: number;
  /** unix ms; null while the listener is disabled or once the delivery is finished */
  next_attempt_at: number | null;
  in_flight: boolean;
  last_error: string | null;
  created_at: number;
  updated_at: number;
}

export interface AttemptRecord {
  number: number;
  started_at: number;
  duration_ms: number;
  status_code: number | null;
  error: string | null;
  response_excerpt: string | null;
}

/** Times are unix ms throughout. Parsed specs are opaque here: the store neither reads nor checks them. */
export interface WorkbookRecord {
  project: string;
  name: string;
  source: string;
  spec: unknown;
  created_at: number;
  updated_at: number;
}

export interface ExecutionRecord {
  id: string;
  project: string;
  workbook: string;
  workflow: string;
  /** The workflow spec as it was at launch. */
  spec: unknown;
  input: Record<string, unknown>;
  state: ExecutionState;
  state_info: string | null;
  /** A cancel or pause that waits for actions in flight to finish before it is complete. */
  pending_operation: ExecutionOperation | null;
  created_at: number;
  updated_at: number;
}

export interface TaskRecord {
  id: string;
  project: string;
  execution_id: string;
  name: string;
  action: string;
  state: TaskState;
  state_info: string | null;
  result: unknown;
  /** Action attempts started so far. */
  tries: number;
  /** When the runner next looks at this RUNNING task (start, retry, or end of a wait); null while its action is in flight. */
  next_run_at: number | null;
  /** When the current attempt's action started; null before it starts. */
  action_started_at: number | null;
  /** Re-run by a client and not yet ended: its end completes the task.rerun operation. */
  rerun: boolean;
  created_at: number;
  updated_at: number;
}

/** A task without its result: what deciding about a whole execution reads, cheap for every task. */
export type TaskSummary = Omit<TaskRecord, 'result'>;
