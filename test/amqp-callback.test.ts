import { describe, expect, it } from 'vitest';
import {
  AmqpCallbackSchema,
  maskAmqpUrl,
  parseBrokerUrl,
  validateAmqpCallback,
} from '../src/transports/amqp-callback.js';
import { classifyAmqpError, scrubSecret } from '../src/transports/amqp-outcome.js';

const good = { transport: 'amqp', url: 'amqp://user:pass@rabbit.example:5672/vhost', topic: 'notifications' };

describe('amqp callback schema', () => {
  it("fills oslo's defaults", () => {
    expect(AmqpCallbackSchema.parse(good)).toEqual({
      transport: 'amqp',
      url: good.url,
      exchange: 'openstack',
      topic: 'notifications',
      routing_key: null,
      format: 'oslo',
      headers: {},
      timeout_ms: 15000,
    });
  });

  it('takes every field the design lists', () => {
    const full = { ...good, exchange: 'watcher', routing_key: 'mine.key', format: 'cloudevents', headers: { 'x-team': 'a' }, timeout_ms: 120000 };
    expect(AmqpCallbackSchema.parse(full)).toEqual(full);
  });

  it.each([
    [{ timeout_ms: 99 }, 'timeout_ms'],
    [{ timeout_ms: 120001 }, 'timeout_ms'],
    [{ timeout_ms: 1.5 }, 'timeout_ms'],
    [{ headers: { 'webhook-id': 'x' } }, 'headers'],
    [{ headers: { 'Content-Type': 'x' } }, 'headers'],
    [{ headers: { a: 'b\r\nc' } }, 'headers.a'],
    [{ transport: 'http' }, 'transport'],
  ])('refuses %j on %s', (patch, path) => {
    const result = AmqpCallbackSchema.safeParse({ ...good, ...patch });
    expect(result.success).toBe(false);
    expect(result.error!.issues.map((i) => i.path.join('.'))).toContain(path);
  });
});

describe('validate', () => {
  it('finds nothing wrong with a good callback, with or without defaults filled', () => {
    expect(validateAmqpCallback(good)).toEqual([]);
    expect(validateAmqpCallback(AmqpCallbackSchema.parse(good))).toEqual([]);
    expect(validateAmqpCallback({ ...good, url: 'amqps://rabbit.example' })).toEqual([]);
  });

  it.each([
    [{ url: undefined }, 'callback.url'],
    [{ url: 'not a url' }, 'callback.url'],
    [{ url: 'http://rabbit.example/' }, 'callback.url'],
    [{ url: 'amqp:///vhost' }, 'callback.url'],
    [{ url: 'amqp://a%zz/' }, 'callback.url'],
    [{ url: 'amqp://us%zzer:pw@host/' }, 'callback.url'],
    [{ url: 7 }, 'callback.url'],
    [{ topic: undefined }, 'callback.topic'],
    [{ topic: '' }, 'callback.topic'],
    [{ topic: 'a*b' }, 'callback.topic'],
    [{ topic: 'amq.notifications' }, 'callback.topic'],
    [{ exchange: '' }, 'callback.exchange'],
    [{ exchange: 'has space' }, 'callback.exchange'],
    [{ exchange: 5 }, 'callback.exchange'],
    [{ routing_key: 'a.#' }, 'callback.routing_key'],
    [{ routing_key: '' }, 'callback.routing_key'],
    [{ routing_key: 'amq.x' }, 'callback.routing_key'],
    [{ routing_key: 'x'.repeat(256) }, 'callback.routing_key'],
    [{ format: 'mistral' }, 'callback.format'],
    [{ format: 'xml' }, 'callback.format'],
    [{ method: 'POST' }, 'callback.method'],
  ])('%j is a problem on %s', (patch, field) => {
    const problems = validateAmqpCallback({ ...good, ...patch });
    expect(problems.map((p) => p.field)).toContain(field);
    for (const p of problems) expect(p.message).not.toBe('');
  });

  it('says which formats an amqp callback takes', () => {
    expect(validateAmqpCallback({ ...good, format: 'mistral' })).toEqual([
      { field: 'callback.format', message: 'must be one of oslo, json, cloudevents, template for the amqp transport' },
    ]);
  });

  it('names the scheme problem', () => {
    expect(validateAmqpCallback({ ...good, url: 'https://rabbit.example/' })).toEqual([
      { field: 'callback.url', message: 'only amqp and amqps URLs are allowed' },
    ]);
  });

  it('leaves the shared fields to the relay', () => {
    expect(validateAmqpCallback({ ...good, timeout_ms: 5, headers: { 'webhook-id': 'x' }, transport: 'http' })).toEqual([]);
  });
});

describe('maskAmqpUrl', () => {
  it.each([
    ['amqp://user:pass@host/vhost', 'amqp://user:***@host/vhost'],
    ['amqps://user:s3cr%2Ft@host:5671/%2f?heartbeat=10', 'amqps://user:***@host:5671/%2f?heartbeat=10'],
    ['amqp://u:p@ss@host/v', 'amqp://u:***@host/v'],
    ['amqp://:onlypass@host/', 'amqp://:***@host/'],
    ['amqp://user@host/', 'amqp://user@host/'],
    ['amqp://host', 'amqp://host'],
    ['not a url //user:secret@host', 'not a url //user:***@host'],
    ['', ''],
  ])('%s → %s', (url, masked) => {
    expect(maskAmqpUrl(url)).toBe(masked);
  });

  it('never shows the password, whatever it holds', () => {
    for (const pw of ['pa:ss', 'p/ss', 'p@ss', 'p?ss', 'p#ss', 'pässword']) {
      const url = `amqp://user:${encodeURIComponent(pw)}@host/v`;
      const masked = maskAmqpUrl(url);
      expect(masked).toBe('amqp://user:***@host/v');
    }
  });
});

describe('parseBrokerUrl', () => {
  it('takes the URL apart as amqplib reads it', () => {
    expect(parseBrokerUrl('amqp://us%3Aer:pa%2Fss@rabbit.example/%2f?heartbeat=5&frameMax=8192')).toEqual({
      protocol: 'amqp',
      hostname: 'rabbit.example',
      port: 5672,
      username: 'us:er',
      password: 'pa/ss',
      vhost: '%2f',
      heartbeat: 5,
      frameMax: 8192,
      channelMax: undefined,
      guardUrl: 'http://rabbit.example:5672/',
    });
  });

  it('defaults the port by scheme and leaves credentials unset without any', () => {
    const tls = parseBrokerUrl('amqps://rabbit.example');
    expect(tls).toMatchObject({ protocol: 'amqps', port: 5671, vhost: '', username: undefined, password: undefined });
    expect(parseBrokerUrl('amqp://h:1234/v').port).toBe(1234);
  });

  it('reads the host as an http URL would, so the guard checks what is connected to', () => {
    expect(parseBrokerUrl('amqp://0x7f.1/').hostname).toBe('127.0.0.1');
    expect(parseBrokerUrl('amqp://2130706433:99/').guardUrl).toBe('http://127.0.0.1:99/');
    expect(parseBrokerUrl('amqp://[::1]/').hostname).toBe('::1');
    expect(parseBrokerUrl('amqp://[::ffff:127.0.0.1]/').guardUrl).toBe('http://[::ffff:7f00:1]:5672/');
  });

  it('refuses other schemes and missing hosts', () => {
    expect(() => parseBrokerUrl('http://h/')).toThrow(/amqp/);
    expect(() => parseBrokerUrl('amqp:///v')).toThrow(/no broker host/);
  });
});

describe('classifyAmqpError', () => {
  const error = (message: string, fields: Record<string, unknown> = {}) => Object.assign(new Error(message), fields);

  it.each([
    [error('connect ECONNREFUSED 127.0.0.1:1', { code: 'ECONNREFUSED' }), 'ECONNREFUSED'],
    [error('getaddrinfo ENOTFOUND x.invalid', { code: 'ENOTFOUND' }), 'ENOTFOUND'],
    [error('getaddrinfo EAI_AGAIN x', { code: 'EAI_AGAIN' }), 'EAI_AGAIN'],
    [error('127.0.0.1, a loopback address', { code: 'EADDRBLOCKED' }), 'EADDRBLOCKED'],
    [error('self-signed certificate', { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' }), 'TLS_ERROR'],
    [error('wrong version number', { code: 'ERR_SSL_WRONG_VERSION_NUMBER' }), 'TLS_ERROR'],
    [error('Hostname/IP does not match', { code: 'ERR_TLS_CERT_ALTNAME_INVALID' }), 'TLS_ERROR'],
    [
      error('Handshake terminated by server: 403 (ACCESS-REFUSED) with message "ACCESS_REFUSED - Login was refused"'),
      'ACCESS_REFUSED',
    ],
    [error('Channel closed by server: 404 (NOT-FOUND) with message "NOT_FOUND - no exchange"', { code: 404 }), 'NOT_FOUND'],
    [error('Operation failed: QueueDeclare; 406 (PRECONDITION-FAILED) with message "…"', { code: 406 }), 'PRECONDITION_FAILED'],
    [error('Connection closed: 320 (CONNECTION-FORCED) with message "CONNECTION_FORCED - test"', { code: 320 }), 'CONNECTION_FORCED'],
    [error('Connection closed (Error: Connection closed: 320 (CONNECTION-FORCED) with message "x")'), 'CONNECTION_FORCED'],
    [error('closed', { code: 405 }), 'RESOURCE_LOCKED'],
    [error('connect ETIMEDOUT'), 'ETIMEDOUT'],
    [error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>'), 'NOT_ALLOWED'],
    [error('Heartbeat timeout'), 'HEARTBEAT_TIMEOUT'],
    [error('Socket closed abruptly during opening handshake'), 'SOCKET_ERROR'],
    [error('Unexpected close'), 'SOCKET_ERROR'],
    [error('channel closed'), 'CHANNEL_CLOSED'],
    [error('Channel closed'), 'CHANNEL_CLOSED'],
    [new RangeError('headers table exceeds 64 KiB'), 'INVALID_REQUEST'],
    [error('something new'), 'AMQP_ERROR'],
    ['a string thrown', 'AMQP_ERROR'],
    [error('odd', { code: 'ERR_SOMETHING' }), 'AMQP_ERROR'],
  ])('%s is %s', (err, code) => {
    expect(classifyAmqpError(err).error).toBe(code);
  });

  it('explains a refused vhost in words', () => {
    expect(classifyAmqpError(new Error('Expected ConnectionOpenOk; got <ConnectionClose channel:0>')).message).toMatch(/vhost/);
  });
});

describe('scrubSecret', () => {
  it('hides the secret wherever it appears, and leaves short secrets alone', () => {
    expect(scrubSecret('login hunter2 refused for hunter2', 'hunter2')).toBe('login *** refused for ***');
    expect(scrubSecret('a b c', 'a')).toBe('a b c');
    expect(scrubSecret('text', undefined)).toBe('text');
  });
});
