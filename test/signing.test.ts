import { randomBytes } from 'node:crypto';
import { describe, it, expect } from 'vitest';
import { Webhook, WebhookVerificationError } from 'standardwebhooks';
import {
  generateSecret,
  isValidSecret,
  signatureHeaders,
  InvalidSecretError,
} from '../src/dispatch/signing.js';

const now = () => Math.floor(Date.now() / 1000);
const body = JSON.stringify({ id: 'evt_1', type: 'TASK_SUCCEEDED', data: { note: 'héllo ✓' } });

describe('generateSecret / isValidSecret', () => {
  it('generates whsec_ secrets of 32 random bytes', () => {
    const a = generateSecret();
    const b = generateSecret();
    expect(a).toMatch(/^whsec_[A-Za-z0-9+/]{43}=$/);
    expect(Buffer.from(a.slice(6), 'base64')).toHaveLength(32);
    expect(a).not.toBe(b);
    expect(isValidSecret(a)).toBe(true);
  });

  it('accepts 24 to 64 byte keys and refuses anything else', () => {
    const of = (n: number) => 'whsec_' + randomBytes(n).toString('base64');
    expect(isValidSecret(of(24))).toBe(true);
    expect(isValidSecret(of(64))).toBe(true);
    expect(isValidSecret(of(23))).toBe(false);
    expect(isValidSecret(of(65))).toBe(false);
    expect(isValidSecret(randomBytes(32).toString('base64'))).toBe(false);
    expect(isValidSecret('whsec_')).toBe(false);
    expect(isValidSecret('whsec_' + '!'.repeat(44))).toBe(false);
    expect(isValidSecret('whsec_' + randomBytes(32).toString('base64').replace(/=$/, ''))).toBe(false);
    expect(isValidSecret(42)).toBe(false);
  });
});

describe('signatureHeaders', () => {
  it('is verified by the standardwebhooks library unchanged', () => {
    const secret = generateSecret();
    const headers = signatureHeaders({ deliveryId: 'dlv_1', timestamp: now(), body, secrets: [secret] });
    expect(headers['webhook-id']).toBe('dlv_1');
    expect(headers['webhook-signature']).toMatch(/^v1,[A-Za-z0-9+/]+=*$/);
    expect(new Webhook(secret).verify(body, { ...headers })).toEqual(JSON.parse(body));
  });

  it('signs a Buffer body the same as its string', () => {
    const secret = generateSecret();
    const input = { deliveryId: 'dlv_b', timestamp: now(), secrets: [secret] };
    const fromString = signatureHeaders({ ...input, body });
    const fromBuffer = signatureHeaders({ ...input, body: Buffer.from(body) });
    expect(fromBuffer).toEqual(fromString);
    expect(() => new Webhook(secret).verify(Buffer.from(body), { ...fromBuffer })).not.toThrow();
  });

  it('signs both secrets during a rotation, and each verifies alone', () => {
    const current = generateSecret();
    const previous = generateSecret();
    const headers = signatureHeaders({ deliveryId: 'dlv_2', timestamp: now(), body, secrets: [current, previous] });
    const parts = headers['webhook-signature'].split(' ');
    expect(parts).toHaveLength(2);
    expect(parts.every((p) => p.startsWith('v1,'))).toBe(true);
    expect(() => new Webhook(current).verify(body, { ...headers })).not.toThrow();
    expect(() => new Webhook(previous).verify(body, { ...headers })).not.toThrow();
    expect(() => new Webhook(generateSecret()).verify(body, { ...headers })).toThrow(WebhookVerificationError);
  });

  it('fails verification for a tampered body, id or timestamp', () => {
    const secret = generateSecret();
    const ts = now();
    const headers = signatureHeaders({ deliveryId: 'dlv_3', timestamp: ts, body, secrets: [secret] });
    const wh = new Webhook(secret);
    expect(() => wh.verify(body.replace('evt_1', 'evt_2'), { ...headers })).toThrow(WebhookVerificationError);
    expect(() => wh.verify(body, { ...headers, 'webhook-id': 'dlv_4' })).toThrow(WebhookVerificationError);
    expect(() => wh.verify(body, { ...headers, 'webhook-timestamp': String(ts - 1) })).toThrow(
      WebhookVerificationError,
    );
  });

  it('covers the empty body of a GET or DELETE', () => {
    const secret = generateSecret();
    const headers = signatureHeaders({ deliveryId: 'dlv_5', timestamp: now(), body: '', secrets: [secret] });
    expect(() => new Webhook(secret).verify('', { ...headers })).not.toThrow();
    expect(() => new Webhook(secret).verify('x', { ...headers })).toThrow(WebhookVerificationError);
  });

  it('gives the same signature for the same input (cached keys do not drift)', () => {
    const secret = generateSecret();
    const input = { deliveryId: 'dlv_6', timestamp: 1_700_000_000, body, secrets: [secret] };
    expect(signatureHeaders(input)).toEqual(signatureHeaders(input));
    expect(signatureHeaders(input)['webhook-timestamp']).toBe('1700000000');
  });

  it('refuses bad secrets and timestamps', () => {
    const base = { deliveryId: 'd', timestamp: now(), body };
    expect(() => signatureHeaders({ ...base, secrets: [] })).toThrow(InvalidSecretError);
    expect(() => signatureHeaders({ ...base, secrets: ['whsec_short'] })).toThrow(InvalidSecretError);
    expect(() => signatureHeaders({ ...base, secrets: [generateSecret()], timestamp: 1.5 })).toThrow(RangeError);
  });
});
