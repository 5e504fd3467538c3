import type { ListenerHealth } from '../src/records/listener-health.js';
import type { DeliveryStatus } from '../src/records/states.js';

/*
 * The fields of the API's answers that the dashboard reads. openapi.yaml is the contract;
 * these mirror it for the compiler, like any other client's would. Record states whose shape
 * the API shows as they are come from src/records (types only: nothing of the relay is bundled).
 */

export type { DeliveryStatus };

export interface Page<T> {
  items: T[];
  next_cursor: string | null;
}

export interface Callback {
  transport: string;
  url?: string;
  method?: string;
  headers?: Record<string, string>;
  format: string;
  timeout_ms: number;
  command?: string;
  args?: string[];
  exchange?: string;
  topic?: string;
  routing_key?: string | null;
  [other: string]: unknown;
}

export interface Listener {
  id: string;
  workbook: string;
  event_types: string[];
  events: string[] | null;
  target: { kind: string; id: string } | null;
  filter: Record<string, unknown> | null;
  callback: Callback;
  retry: { schedule_ms: number[] };
  enabled: boolean;
  disabled_reason: string | null;
  description: string | null;
  created_at: string;
  updated_at: string;
  ordering?: string;
  max_in_flight?: number;
  rate_limit_per_s?: number | null;
  /** Read-only; absent from relays older than the rollups. */
  health?: ListenerHealth;
}

export interface ListenerRotated extends Listener {
  secret: string;
  previous_secret_expires_at: string;
}

export interface Delivery {
  id: string;
  event_id: string;
  event_type: string;
  workbook: string | null;
  listener_id: string;
  status: DeliveryStatus;
  attempt_count: number;
  next_attempt_at: string | null;
  in_flight: boolean;
  last_error: string | null;
  created_at: string;
  updated_at: string;
}

export interface Attempt {
  number: number;
  started_at: string;
  duration_ms: number;
  status_code: number | null;
  error: string | null;
  response_excerpt: string | null;
}

export interface DeliveryWithAttempts extends Delivery {
  attempts: Attempt[];
}

export interface RelayEvent {
  id: string;
  type: string;
  category: string;
  workbook: string | null;
  workflow: string | null;
  execution_id: string | null;
  task_id: string | null;
  task_name: string | null;
  state: string | null;
  previous_state: string | null;
  state_info: string | null;
  sequence: number | null;
  occurred_at: string;
  received_at: string;
  source: string;
  priority: string | null;
  data: Record<string, unknown>;
}

export interface EventWithDeliveries extends RelayEvent {
  /** The first 1000. */
  deliveries: Delivery[];
  /** Non-null when there are more: GET /v1/deliveries?event_id= continues with it. */
  deliveries_next_cursor: string | null;
}

export interface Execution {
  id: string;
  workbook: string;
  workflow: string;
  input: Record<string, unknown>;
  state: string;
  state_info: string | null;
  created_at: string;
  updated_at: string;
}

export interface Task {
  id: string;
  execution_id: string;
  name: string;
  action: string;
  state: string;
  state_info: string | null;
  result: unknown;
  tries: number;
  next_run_at: string | null;
  created_at: string;
  updated_at: string;
}

export interface StatsPoint {
  at: string;
  succeeded: number;
  failed: number;
  retried: number;
  p50_ms: number | null;
  p95_ms: number | null;
}

export interface Stats {
  window: string;
  bucket: string;
  series: StatsPoint[];
}
