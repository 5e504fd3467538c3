import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, TOKEN_B, type TestRelay } from './helpers/relay.js';
import { startExecution, waitForState, workbook } from './helpers/engine.js';

/* Workbook definitions over the REST API: YAML or JSON bodies, 400 with lines, 409s. */

let relay: TestRelay;

beforeAll(async () => {
  relay = await startTestRelay();
});

afterAll(async () => {
  await relay.close();
  fs.rmSync(relay.dataDir, { recursive: true, force: true });
});

const yaml = (source: string, type = 'application/yaml') => ({ raw: source, headers: { 'content-type': type } });
const api = (...args: Parameters<TestRelay['api']>) => relay.api(...args);

describe('workbooks', () => {
  it('creates, lists, reads, replaces and deletes a workbook', async () => {
    const source = workbook('crud', `one: {action: std.noop}`);
    const created = await api('POST', '/v1/workbooks', undefined, yaml(source));
    expect(created.status, created.text).toBe(201);
    expect(created.headers.get('location')).toBe('/v1/workbooks/crud');
    expect(created.body).toEqual({
      name: 'crud',
      definition: source,
      workflows: ['main'],
      created_at: expect.any(String),
      updated_at: created.body.created_at,
    });
    expect((await api('POST', '/v1/workbooks', undefined, yaml(source, 'text/yaml'))).status).toBe(409);

    const read = await api('GET', '/v1/workbooks/crud');
    expect(read.body.definition).toBe(source);

    const replaced = source.replace('main:', 'other:');
    const put = await api('PUT', '/v1/workbooks/crud', undefined, yaml(replaced, 'application/x-yaml'));
    expect(put.status, put.text).toBe(200);
    expect(put.body).toMatchObject({ name: 'crud', definition: replaced, workflows: ['other'] });
    const renamed = await api('PUT', '/v1/workbooks/crud', undefined, yaml(replaced.replace('name: crud', 'name: crud2')));
    expect(renamed.status).toBe(400);
    expect(renamed.body.errors[0].field).toBe('name');
    expect((await api('PUT', '/v1/workbooks/absent', undefined, yaml(workbook('absent', 'a: {action: std.noop}')))).status).toBe(404);

    expect((await api('GET', '/v1/workbooks/crud', undefined, { token: TOKEN_B })).status).toBe(404);
    expect((await api('DELETE', '/v1/workbooks/crud', undefined, { token: TOKEN_B })).status).toBe(404);
    expect((await api('DELETE', '/v1/workbooks/crud')).status).toBe(204);
    expect((await api('GET', '/v1/workbooks/crud')).status).toBe(404);
    expect((await api('DELETE', '/v1/workbooks/crud')).status).toBe(404);
  });

  it('takes JSON: the workbook itself, or {"definition": "<yaml>"}', async () => {
    const spec = { version: '2.0', name: 'as_json', workflows: { main: { tasks: { one: { action: 'std.noop' } } } } };
    const text = JSON.stringify(spec, null, 2);
    const created = await api('POST', '/v1/workbooks', undefined, { raw: text, headers: { 'content-type': 'application/json' } });
    expect(created.status, created.text).toBe(201);
    expect(created.body).toMatchObject({ name: 'as_json', definition: text, workflows: ['main'] });
    const wrapped = await api('POST', '/v1/workbooks', { definition: workbook('wrapped', 'one: {action: std.noop}') });
    expect(wrapped.status, wrapped.text).toBe(201);
    expect(wrapped.body.definition).toContain('name: wrapped');
  });

  it('refuses a bad definition with every problem and its line, and stores nothing', async () => {
    const bad = workbook('broken', `
one: {action: std.nope, on-success: [missing]}
two: {action: std.noop}`);
    const res = await api('POST', '/v1/workbooks', undefined, yaml(bad));
    expect(res.status).toBe(400);
    expect(res.headers.get('content-type')).toContain('application/problem+json');
    expect(res.body.errors.length).toBeGreaterThanOrEqual(2);
    for (const e of res.body.errors) expect(e).toEqual({ field: expect.any(String), message: expect.any(String), line: 6 });
    expect((await api('GET', '/v1/workbooks/broken')).status).toBe(404);

    const syntax = await api('POST', '/v1/workbooks', undefined, yaml('version: "2.0"\nname: [unclosed\n'));
    expect(syntax.status).toBe(400);
    expect(syntax.body.errors[0]).toMatchObject({ field: '(body)', line: expect.any(Number) });
    expect((await api('POST', '/v1/workbooks', undefined, yaml(''))).status).toBe(400);
  });

  it('refuses with a 400, quickly, definitions whose YAML aliases expand too much (POST and PUT)', async () => {
    const laughs = [`l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]`];
    for (let i = 1; i <= 9; i++) laughs.push(`l${i}: &l${i} [${Array(9).fill(`*l${i - 1}`).join(', ')}]`);
    const billion = workbook('laughs', `one: {action: std.echo, input: {output: {${laughs.join(', ')}}}}`);
    const big = 'x'.repeat(400_000);
    const wide = workbook(
      'wide',
      [`anchor: {action: std.echo, input: {output: &big "${big}"}}`, ...Array.from({ length: 12 }, (_, i) => `t${i}: {action: std.echo, input: {output: *big}}`)].join('\n'),
    );
    await api('POST', '/v1/workbooks', undefined, yaml(workbook('wide', 'one: {action: std.noop}')));
    for (const [method, path, source, message] of [
      ['POST', '/v1/workbooks', billion, /^the aliases in this document expand too much/],
      ['POST', '/v1/workbooks', wide, /^with its aliases expanded the definition is more than 4 MiB of JSON/],
      ['PUT', '/v1/workbooks/wide', wide, /^with its aliases expanded the definition is more than 4 MiB of JSON/],
    ] as const) {
      const started = performance.now();
      const res = await api(method, path, undefined, yaml(source));
      expect(performance.now() - started).toBeLessThan(3000);
      expect(res.status, res.text).toBe(400);
      expect(res.headers.get('content-type')).toContain('application/problem+json');
      expect(res.body.errors).toEqual([{ field: '(body)', message: expect.stringMatching(message) }]);
    }
    expect((await api('GET', '/v1/workbooks/laughs')).status).toBe(404);
    expect((await api('GET', '/v1/workbooks/wide')).body.workflows).toEqual(['main']);
  });

  it('answers 415 for other media types', async () => {
    const source = workbook('typed', 'one: {action: std.noop}');
    expect((await api('POST', '/v1/workbooks', undefined, yaml(source, 'text/plain'))).status).toBe(415);
    expect((await api('POST', '/v1/workbooks', undefined, { raw: source })).status).toBe(415);
    expect((await api('PUT', '/v1/workbooks/typed', undefined, yaml(source, 'application/xml'))).status).toBe(415);
  });

  it('refuses to delete a workbook while an execution of it runs', async () => {
    await api('POST', '/v1/workbooks', undefined, yaml(workbook('busy', `wait: {action: std.sleep, input: {seconds: 30}}`)));
    const id = await startExecution(api, 'busy');
    const refused = await api('DELETE', '/v1/workbooks/busy');
    expect(refused.status).toBe(409);
    expect(refused.body.detail).toContain('RUNNING');
    expect((await api('PUT', `/v1/executions/${id}`, { state: 'PAUSED' })).status).toBe(200);
    expect((await api('DELETE', '/v1/workbooks/busy')).status).toBe(409);
    expect((await api('PUT', `/v1/executions/${id}`, { state: 'CANCELLED' })).status).toBe(200);
    await waitForState(api, id, ['CANCELLED']);
    expect((await api('DELETE', '/v1/workbooks/busy')).status).toBe(204);
    // The execution keeps the workflow it ran, and stays readable.
    expect((await api('GET', `/v1/executions/${id}`)).body).toMatchObject({ workbook: 'busy', state: 'CANCELLED' });
  });

  it('lists workbooks by name, in pages', async () => {
    for (const name of ['page_c', 'page_a', 'page_b']) {
      await api('POST', '/v1/workbooks', undefined, { ...yaml(workbook(name, 'one: {action: std.noop}')), token: TOKEN_B });
    }
    const first = await api('GET', '/v1/workbooks?limit=2', undefined, { token: TOKEN_B });
    expect(first.body.items.map((w: any) => w.name)).toEqual(['page_a', 'page_b']);
    const second = await api('GET', `/v1/workbooks?limit=2&cursor=${first.body.next_cursor}`, undefined, { token: TOKEN_B });
    expect(second.body.items.map((w: any) => w.name)).toEqual(['page_c']);
    expect(second.body.next_cursor).toBeNull();
  });
});
