import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redactCredentials, redactUrl } from '../src/engine/url-credentials.js';
import { startReceiver, type Receiver } from './helpers/receiver.js';
import {
  createEngineListener,
  createWorkbook,
  eventsOf,
  startEngineRelay,
  startExecution,
  tasksOf,
  waitForEvents,
  waitForState,
  workbook,
  type EngineRelay,
} from './helpers/engine.js';

/*
 * Credentials in a std.http URL (user:password@) stay out of everything the relay says about
 * the call: task and execution state_info, the events sent to listeners and stored, and logs.
 */

describe('redactUrl', () => {
  it.each<[string, string]>([
    ['http://user:s3cret@host/path?q=1#f', 'http://user:***@host/path?q=1#f'],
    ['https://user:s3cret@host:8443/', 'https://user:***@host:8443/'],
    ['http://user:p%40ss@host/x', 'http://user:***@host/x'],
    ['http://us%20er:p@ss@host/x', 'http://us%20er:***@host/x'],
    ['http:user:s3cret@host/x', 'http://user:***@host/x'],
    ['http://tok3n@host/x', 'http://***@host/x'],
    ['http://:s3cret@host/x', 'http://:***@host/x'],
    ['http://host/path', 'http://host/path'],
    ['http://host:80/a b', 'http://host:80/a b'],
  ])('%s → %s', (url, shown) => {
    expect(redactUrl(url)).toBe(shown);
  });

  it('masks credentials even in text that does not parse as a URL', () => {
    expect(redactUrl('http://user:s3cret@[::1/x')).toBe('http://***@[::1/x');
  });
});

describe('redactCredentials', () => {
  const url = 'http://alice:s3cret@api.example.com/v1/charge';

  it('replaces the URL as written and as parsed', () => {
    expect(redactCredentials(`GET ${url} failed`, url)).toBe('GET http://alice:***@api.example.com/v1/charge failed');
    const unparsed = 'HTTP://alice:s3cret@API.example.com/v1/../v1/charge';
    expect(redactCredentials(`could not reach ${new URL(unparsed).href}`, unparsed)).toBe(
      'could not reach http://alice:***@api.example.com/v1/charge',
    );
  });

  it('masks the user info of any other URL in the text', () => {
    expect(redactCredentials('redirected to https://bob:hunter2@other.example/ and ftp://x:y@z/', url)).toBe(
      'redirected to https://***@other.example/ and ftp://***@z/',
    );
  });

  it('leaves text without credentials, and what it already masked, as it was', () => {
    const text = 'connect ECONNREFUSED 127.0.0.1:1 (http://host/a, mail a@b.example, http://alice:***@h/)';
    expect(redactCredentials(text, url)).toBe(text);
    expect(redactCredentials(text)).toBe(text);
  });
});

describe('std.http with credentials in its URL, against a real relay', () => {
  let relay: EngineRelay;
  let receiver: Receiver;
  const HOOK = '/hook';
  const SECRETS = ['s3cret-pw', 'tok3n-abc123', 'from-input-pw'];

  beforeAll(async () => {
    receiver = await startReceiver();
    relay = await startEngineRelay();
    await createEngineListener(relay.api, receiver.url(HOOK));
  });

  afterAll(async () => {
    await relay.close();
    await receiver.close();
    fs.rmSync(relay.dataDir, { recursive: true, force: true });
  });

  const withCredentials = (userinfo: string, path: string) => receiver.url(path).replace('http://', `http://${userinfo}@`);

  it('shows the URL without its password or token in state_info, events and logs', async () => {
    receiver.respond('/refused', [500]);
    const port = receiver.port;
    await createWorkbook(
      relay.api,
      workbook('secret_urls', `
status: {action: std.http, input: {url: "${withCredentials('alice:s3cret-pw', '/refused')}"}, retry: {count: 1, delay: 0.05}, on-error: [token]}
token: {action: std.http, input: {url: "${withCredentials('tok3n-abc123', '/refused')}", method: POST, body: {a: 1}}, on-error: [closed]}
closed: {action: std.http, input: {url: "http://carol:s3cret-pw@127.0.0.1:1/x"}}`),
    );
    const id = await startExecution(relay.api, 'secret_urls');
    const execution = await waitForState(relay.api, id, ['SUCCESS', 'ERROR']);
    const tasks = await tasksOf(relay.api, id);
    expect(tasks.map((t) => [t.name, t.state, t.tries])).toEqual([
      ['status', 'ERROR', 2],
      ['token', 'ERROR', 1],
      ['closed', 'ERROR', 1],
    ]);
    expect(tasks[0].state_info).toBe(`HTTP 500 from GET http://alice:***@127.0.0.1:${port}/refused`);
    expect(tasks[1].state_info).toBe(`HTTP 500 from POST http://***@127.0.0.1:${port}/refused`);
    expect(tasks[2].state_info).toMatch(/^ECONNREFUSED: GET http:\/\/carol:\*\*\*@127\.0\.0\.1:1\/x: /);
    expect(execution.state_info).toBe(`task closed failed: ${tasks[2].state_info}`);
    // The calls were made (the credentials are the caller's business, not the message's).
    expect(receiver.requests('/refused')).toHaveLength(3);

    const stored = (await relay.api('GET', `/v1/events?execution_id=${id}&limit=1000`)).body.items;
    await receiver.waitFor(() => eventsOf(receiver, HOOK, id).length === stored.length);
    const failed = (await waitForEvents(receiver, HOOK, id, 'WORKFLOW_FAILED')).filter((e) => e.type === 'TASK_FAILED');
    expect(failed.map((e) => e.state_info)).toEqual(tasks.map((t) => t.state_info));

    const everything = [
      JSON.stringify(stored),
      ...receiver.requests(HOOK).map((r) => r.text),
      JSON.stringify(await relay.api('GET', `/v1/executions/${id}`)),
      JSON.stringify(tasks),
      JSON.stringify(relay.logs),
    ].join('\n');
    expect(relay.logs.length).toBeGreaterThan(0);
    for (const secret of SECRETS) expect(everything).not.toContain(secret);
    expect(everything).toContain('alice:***@');
  });

  it('redacts credentials that expressions put into the URL', async () => {
    receiver.respond('/built', [503]);
    await createWorkbook(
      relay.api,
      workbook('built_url', `
call: {action: std.http, input: {url: "http://<% $.user %>:<% $.password %>@127.0.0.1:${receiver.port}/built"}}`, ['user', 'password']),
    );
    const id = await startExecution(relay.api, 'built_url', { user: 'dave', password: 'from-input-pw' });
    const execution = await waitForState(relay.api, id, ['SUCCESS', 'ERROR']);
    const [call] = await tasksOf(relay.api, id);
    expect(call.state_info).toBe(`HTTP 503 from GET http://dave:***@127.0.0.1:${receiver.port}/built`);
    expect(execution.state_info).toBe(`task call failed: ${call.state_info}`);
    expect(JSON.stringify(relay.logs)).not.toContain('from-input-pw');
  });
});
