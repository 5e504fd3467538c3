import { describe, it, expect } from 'vitest';
import { EventInput } from '../src/records/event.js';
import {
  MistralBodyError,
  canonicalJson,
  fromMistralTime,
  parseMistralNotification,
  type MistralParseResult,
} from '../src/ingest/mistral.js';
import { MISTRAL_TASK_BODY as SAMPLE_TASK_BODY, MISTRAL_WORKFLOW_FIELDS as workflowBody } from './helpers/mistral-bodies.js';


function parsed(raw: string | Buffer, workbook?: string | null) {
  const result = parseMistralNotification(raw, { workbook });
  if (result.kind !== 'event') throw new Error(`expected an event, got ${JSON.stringify(result)}`);
  return result;
}

function bodyError(raw: string | Buffer): MistralBodyError {
  try {
    parseMistralNotification(raw, {});
  } catch (err) {
    expect(err).toBeInstanceOf(MistralBodyError);
    return err as MistralBodyError;
  }
  throw new Error('expected a MistralBodyError');
}

describe('parseMistralNotification: task body', () => {
  it('maps the INTEROP sample task body to the envelope', () => {
    const { event, originalBody } = parsed(SAMPLE_TASK_BODY);
    expect(event).toEqual({
      id: expect.stringMatching(/^mistral-[0-9a-f]{32}$/),
      type: 'TASK_SUCCEEDED',
      workbook: 'hello',
      workflow: 'hello',
      execution_id: '26a6…',
      task_id: '6954…',
      task_name: 'first',
      state: 'SUCCESS',
      previous_state: null,
      state_info: null,
      occurred_at: '2026-11-23T01:43:39.000Z',
      source: 'mistral',
      data: JSON.parse(SAMPLE_TASK_BODY),
    });
    expect(event).not.toHaveProperty('category');
    expect(event).not.toHaveProperty('sequence');
    expect(originalBody).toBe(SAMPLE_TASK_BODY);
    expect(EventInput.safeParse(event).success).toBe(true);
  });

  it('reads a Buffer as UTF-8 and gives the same event and body text', () => {
    const fromString = parsed(SAMPLE_TASK_BODY);
    const fromBuffer = parsed(Buffer.from(SAMPLE_TASK_BODY, 'utf8'));
    expect(fromBuffer.event).toEqual(fromString.event);
    expect(fromBuffer.originalBody).toBe(SAMPLE_TASK_BODY);
    expect(fromBuffer.event.execution_id).toBe('26a6…');
  });

  it('keeps data.type of the body for filters', () => {
    expect(parsed(SAMPLE_TASK_BODY).event.data?.type).toBe('ACTION');
  });

  it('keeps a leading byte order mark in the original body but parses past it', () => {
    const withBom = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(SAMPLE_TASK_BODY)]);
    const result = parsed(withBom);
    expect(result.originalBody).toBe('\ufeff' + SAMPLE_TASK_BODY);
    expect(result.event.id).toBe(parsed(SAMPLE_TASK_BODY).event.id);
  });
});

describe('parseMistralNotification: workflow body', () => {
  it('maps a workflow body with all INTEROP keys', () => {
    const raw = JSON.stringify(workflowBody);
    const { event, originalBody } = parsed(raw);
    expect(event).toEqual({
      id: expect.stringMatching(/^mistral-[0-9a-f]{32}$/),
      type: 'WORKFLOW_FAILED',
      workbook: 'hello',
      workflow: 'hello',
      execution_id: workflowBody.id,
      task_id: null,
      task_name: null,
      state: 'ERROR',
      previous_state: null,
      state_info: 'Failure caused by error in tasks: first',
      occurred_at: '2026-11-23T01:43:41.000Z',
      source: 'mistral',
      data: workflowBody,
    });
    expect(originalBody).toBe(raw);
    expect(EventInput.safeParse(event).success).toBe(true);
  });

  it('prefers workflow_name over name and falls back to name', () => {
    const both = parsed(JSON.stringify({ ...workflowBody, name: 'exec-name', workflow_name: 'wf' })).event;
    expect(both.workflow).toBe('wf');
    expect(both.workbook).toBe('wf');
    const { workflow_name: _, ...noWorkflowName } = workflowBody;
    const onlyName = parsed(JSON.stringify(noWorkflowName)).event;
    expect(onlyName.workflow).toBe('hello');
    expect(onlyName.workbook).toBe('hello');
  });
});

describe('parseMistralNotification: workbook override', () => {
  it('uses ?workbook= over the workflow name', () => {
    expect(parsed(SAMPLE_TASK_BODY, 'billing').event.workbook).toBe('billing');
    expect(parsed(JSON.stringify(workflowBody), 'billing').event.workbook).toBe('billing');
    expect(parsed(SAMPLE_TASK_BODY, 'billing').event.workflow).toBe('hello');
  });

  it('treats null or empty as no override', () => {
    expect(parsed(SAMPLE_TASK_BODY, null).event.workbook).toBe('hello');
    expect(parsed(SAMPLE_TASK_BODY, '').event.workbook).toBe('hello');
    expect(parseMistralNotification(SAMPLE_TASK_BODY, {})).toEqual(parsed(SAMPLE_TASK_BODY));
  });

  it('is part of the event id, so two labelled subscriptions do not collide', () => {
    const plain = parsed(SAMPLE_TASK_BODY).event.id;
    expect(parsed(SAMPLE_TASK_BODY, 'billing').event.id).not.toBe(plain);
    expect(parsed(SAMPLE_TASK_BODY, 'billing').event.id).toBe(parsed(SAMPLE_TASK_BODY, 'billing').event.id);
    expect(parsed(SAMPLE_TASK_BODY, '').event.id).toBe(plain);
  });

  it('refuses an over-long workbook', () => {
    expect(() => parseMistralNotification(SAMPLE_TASK_BODY, { workbook: 'w'.repeat(256) })).toThrow(
      expect.objectContaining({ field: 'workbook' }),
    );
  });
});

describe('parseMistralNotification: names as long as Mistral keeps them', () => {
  it('takes a workflow and a task name of 255 characters (String(255) in Mistral), and the event passes EventInput', () => {
    const long = { ...JSON.parse(SAMPLE_TASK_BODY), name: 't'.repeat(255), workflow_name: 'w'.repeat(255) };
    const { event } = parsed(JSON.stringify(long));
    expect(event).toMatchObject({ workbook: 'w'.repeat(255), workflow: 'w'.repeat(255), task_name: 't'.repeat(255) });
    expect(EventInput.safeParse(event).success).toBe(true);
  });
});

describe('parseMistralNotification: ignored notifications', () => {
  it.each([
    ['event null', { ...workflowBody, event: null }],
    ['event missing', (({ event: _, ...rest }) => rest)(workflowBody)],
    ['event null and nothing else', { event: null }],
  ])('ignores %s', (_label, body) => {
    const result: MistralParseResult = parseMistralNotification(JSON.stringify(body), {});
    expect(result).toEqual({ kind: 'ignored', reason: expect.any(String) });
  });
});

describe('parseMistralNotification: duplicates', () => {
  const sample = JSON.parse(SAMPLE_TASK_BODY) as Record<string, unknown>;

  it('gives a byte-identical repost the same id', () => {
    expect(parsed(SAMPLE_TASK_BODY).event.id).toBe(parsed(Buffer.from(SAMPLE_TASK_BODY)).event.id);
  });

  it('gives the same body with keys reordered or re-spaced the same id', () => {
    const reordered = Object.fromEntries(Object.entries(sample).reverse());
    const compact = JSON.stringify(reordered);
    expect(compact).not.toBe(SAMPLE_TASK_BODY);
    expect(parsed(compact).event.id).toBe(parsed(SAMPLE_TASK_BODY).event.id);
    expect(parsed(JSON.stringify(reordered, null, 2)).event.id).toBe(parsed(SAMPLE_TASK_BODY).event.id);
  });

  it('gives a RUNNING→RUNNING repeat of TASK_LAUNCHED the same id only when nothing else changed', () => {
    const launched = { ...sample, state: 'RUNNING', event: 'TASK_LAUNCHED', finished_at: null };
    const again = Object.fromEntries(Object.entries(launched).reverse());
    expect(parsed(JSON.stringify(again)).event.id).toBe(parsed(JSON.stringify(launched)).event.id);
    const later = { ...launched, updated_at: '2026-11-23 01:43:40' };
    expect(parsed(JSON.stringify(later)).event.id).not.toBe(parsed(JSON.stringify(launched)).event.id);
  });

  it('gives a different state, event or updated_at a different id', () => {
    const base = parsed(SAMPLE_TASK_BODY).event.id;
    const ids = [
      { ...sample, state: 'ERROR', event: 'TASK_FAILED' },
      { ...sample, state: 'ERROR' },
      { ...sample, updated_at: '2026-11-23 01:43:40' },
      { ...sample, state_info: 'boom' },
    ].map((b) => parsed(JSON.stringify(b)).event.id);
    expect(new Set([base, ...ids]).size).toBe(ids.length + 1);
  });

  it('does not confuse a task and a workflow body of the same execution', () => {
    expect(parsed(JSON.stringify(workflowBody)).event.id).not.toBe(parsed(SAMPLE_TASK_BODY).event.id);
  });
});

describe('canonicalJson', () => {
  it('sorts keys at every level and keeps array order', () => {
    expect(canonicalJson({ b: [{ y: 1, x: 2 }, 3], a: { d: null, c: 'é' } })).toBe(
      '{"a":{"c":"é","d":null},"b":[{"x":2,"y":1},3]}',
    );
  });
});

describe('parseMistralNotification: bad bodies', () => {
  it.each([
    ['not JSON', 'event=TASK_SUCCEEDED', '(body)'],
    ['empty', '', '(body)'],
    ['a JSON array', JSON.stringify([JSON.parse(SAMPLE_TASK_BODY)]), '(body)'],
    ['a JSON string', '"TASK_SUCCEEDED"', '(body)'],
    ['JSON null', 'null', '(body)'],
  ])('refuses a body that is %s', (_label, raw, field) => {
    const err = bodyError(raw);
    expect(err.field).toBe(field);
    expect(err.code).toBe('INVALID_MISTRAL_BODY');
    expect(err.message).toMatch(/^\(body\): /);
  });

  it('refuses a Buffer that is not UTF-8', () => {
    expect(bodyError(Buffer.from([0x7b, 0xff, 0x7d])).field).toBe('(body)');
  });

  const sample = JSON.parse(SAMPLE_TASK_BODY) as Record<string, unknown>;
  const without = (key: string) => JSON.stringify(Object.fromEntries(Object.entries(sample).filter(([k]) => k !== key)));

  it.each([
    ['id missing', without('id'), 'id'],
    ['id null', JSON.stringify({ ...sample, id: null }), 'id'],
    ['id a number', JSON.stringify({ ...sample, id: 6954 }), 'id'],
    ['state missing', without('state'), 'state'],
    ['event a number', JSON.stringify({ ...sample, event: 7 }), 'event'],
    ['event empty', JSON.stringify({ ...sample, event: '' }), 'event'],
    ['event too long', JSON.stringify({ ...sample, event: 'E'.repeat(201) }), 'event'],
    ['state_info an object', JSON.stringify({ ...sample, state_info: { error: 'x' } }), 'state_info'],
    ['name a number', JSON.stringify({ ...sample, name: 1 }), 'name'],
    ['workflow_execution_id an object', JSON.stringify({ ...sample, workflow_execution_id: {} }), 'workflow_execution_id'],
    ['workflow_name too long', JSON.stringify({ ...sample, workflow_name: 'w'.repeat(256) }), 'workflow_name'],
    ['name too long', JSON.stringify({ ...sample, name: 'n'.repeat(256) }), 'name'],
  ])('refuses a body with %s, naming the field', (_label, raw, field) => {
    const err = bodyError(raw);
    expect(err.field).toBe(field);
    expect(err.message.startsWith(`${field}: `)).toBe(true);
  });

  it('refuses a body nested too deeply to canonicalise', () => {
    const deep = `{"id":"x","state":"RUNNING","event":"TASK_LAUNCHED","workflow_execution_id":"e","deep":${'['.repeat(200_000)}${']'.repeat(200_000)}}`;
    const err = bodyError(deep);
    expect(err.field).toBe('(body)');
    expect(err.message).toMatch(/nests objects and arrays deeper than 64 levels/);
  });
});

describe('occurred_at from Mistral times', () => {
  it('converts Mistral UTC times to ISO 8601 with milliseconds', () => {
    expect(fromMistralTime('2026-11-23 01:43:39')).toBe('2026-11-23T01:43:39.000Z');
    expect(fromMistralTime('2026-11-23 01:43:39.123456')).toBe('2026-11-23T01:43:39.123Z');
    expect(EventInput.shape.occurred_at.safeParse(fromMistralTime('2026-11-23 01:43:39')).success).toBe(true);
  });

  it.each([
    '2026-11-23T01:43:39',
    '2026-11-23 01:43:39Z',
    '2026-11-23 1:43:39',
    '2026-02-30 00:00:00',
    '2026-13-01 00:00:00',
    '2026-11-23 24:00:00',
    '2026-11-23 01:60:00',
    'yesterday',
    '',
  ])('leaves %j unconverted', (value) => {
    expect(fromMistralTime(value)).toBeNull();
  });

  it('falls back to created_at when updated_at is missing or malformed', () => {
    const sample = JSON.parse(SAMPLE_TASK_BODY) as Record<string, unknown>;
    const created = { ...sample, created_at: '2026-11-23 01:43:30' };
    expect(parsed(JSON.stringify({ ...created, updated_at: null })).event.occurred_at).toBe('2026-11-23T01:43:30.000Z');
    expect(parsed(JSON.stringify({ ...created, updated_at: 'soon' })).event.occurred_at).toBe('2026-11-23T01:43:30.000Z');
  });

  it('leaves occurred_at unset when neither time parses, so the relay stamps its own', () => {
    const sample = JSON.parse(SAMPLE_TASK_BODY) as Record<string, unknown>;
    const { event } = parsed(JSON.stringify({ ...sample, updated_at: '2026-11-23', created_at: 42 }));
    expect(event).not.toHaveProperty('occurred_at');
    expect(EventInput.safeParse(event).success).toBe(true);
  });
});
