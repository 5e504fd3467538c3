import type { EventEnvelope } from '../../src/records/event.js';
import type { StoredListener } from '../../src/records/listener.js';

/** A TASK_SUCCEEDED envelope of the billing workbook, as the pure tests start from; `over` changes fields. */
export function taskEnvelope(over: Partial<EventEnvelope> = {}): EventEnvelope {
  return {
    id: '01JD0000000000000000000001',
    type: 'TASK_SUCCEEDED',
    category: 'TASK',
    workbook: 'billing',
    workflow: 'charge',
    execution_id: 'exec-1',
    task_id: 'task-1',
    task_name: 'charge_card',
    state: 'SUCCESS',
    previous_state: 'RUNNING',
    state_info: null,
    sequence: 7,
    occurred_at: '2026-11-23T10:00:00.123Z',
    source: 'engine',
    priority: null,
    data_schema: null,
    source_format: null,
    data: { amount: 5, nested: { a: 1 } },
    ...over,
  };
}

/** A stored http listener of every TASK event, as the store and fan-out tests start from. */
export function storedListener(id: string, over: Partial<StoredListener> = {}): StoredListener {
  return {
    id,
    project: 'p1',
    workbook: '*',
    event_types: ['TASK'],
    events: null,
    target: null,
    filter: null,
    callback: { transport: 'http', url: 'http://127.0.0.1:9/x', method: 'POST', headers: {}, format: 'json', timeout_ms: 1000 },
    retry: { schedule_ms: [1000] },
    ordering: 'none',
    max_in_flight: 32,
    rate_limit_per_s: null,
    enabled: true,
    description: null,
    secret: 'whsec_' + Buffer.alloc(32, 1).toString('base64'),
    previous_secret: null,
    previous_secret_expires_at: null,
    disabled_reason: null,
    created_at: new Date(0).toISOString(),
    updated_at: new Date(0).toISOString(),
    ...over,
  };
}
