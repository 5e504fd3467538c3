import fs from 'node:fs';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTestRelay, tempDir, TOKEN_A, type TestRelay } from './helpers/relay.js';
import { cleanEnv, runBin, spawnRelay, type SpawnedRelay } from './helpers/spawn-relay.js';
import { waitUntil } from './helpers/relay-process.js';
import { BROKER_URL, connectTestBroker, uniqueName, type TestBroker } from './interop/broker.js';
import { esiSampleConfig } from './helpers/esi-sample.js';

/*
 * The whole esi-event-actions story with the built CLI, a relay child process and the real
 * RabbitMQ: the sample configuration from the esi-leap docs is imported (its [delete] section
 * refused for its stray brace, [fulfill] created), esi-leap style notifications are published,
 * and the script runs once, for the one that matches, with the right arguments.
 */

const T = 60_000;

let workDir: string;
let execDir: string;
let recordDir: string;
let configFile: string;
let relay: SpawnedRelay | undefined;
let broker: TestBroker;
const exchange = uniqueName('cr-esi-x');
const queuePrefix = uniqueName('esi_leap_versioned_notifications');
const queues = [`${queuePrefix}.info`, `${queuePrefix}.error`];

// The sample an operator has from the esi-leap docs (INTEROP.md), pointed at the local broker.
const sampleConfig = () => esiSampleConfig({ user: 'guest', password: 'guest', host: '127.0.0.1', port: '5672', queues: queues.join(',') });

const cli = (args: string[], target: { url: string; token: string } | null = relay ? { url: relay.url, token: relay.token } : null) =>
  runBin(args, { env: cleanEnv(target ? { RELAY_URL: target.url, RELAY_TOKEN: target.token } : {}), cwd: workDir });

async function api(method: string, pathname: string): Promise<any> {
  const res = await fetch(relay!.url + pathname, { method, headers: { authorization: `Bearer ${relay!.token}` } });
  return res.json();
}

/** A lease notification as esi-leap's notifier sends it: messagingv2, versioned esi_leap_object payload. */
function publishLease(eventType: string, data: Record<string, unknown>): string {
  const messageId = randomUUID();
  const message = {
    message_id: messageId,
    publisher_id: 'esi-leap.manager:lease-host',
    event_type: eventType,
    priority: 'INFO',
    payload: {
      'esi_leap_object.name': 'LeasePayload',
      'esi_leap_object.namespace': 'esi_leap',
      'esi_leap_object.version': '1.0',
      'esi_leap_object.data': data,
    },
    timestamp: '2026-11-23 10:00:00.000000',
    _unique_id: randomUUID().replace(/-/g, ''),
  };
  const body = Buffer.from(JSON.stringify({ 'oslo.version': '2.0', 'oslo.message': JSON.stringify(message) }));
  broker.channel.publish(exchange, `${queuePrefix}.info`, body, { contentType: 'application/json' });
  return messageId;
}

const runs = () => fs.readdirSync(recordDir).filter((f) => f.endsWith('.args'));

beforeAll(async () => {
  workDir = tempDir('cli-esi-');
  execDir = path.join(workDir, 'scripts');
  recordDir = path.join(workDir, 'records');
  fs.mkdirSync(execDir);
  fs.mkdirSync(recordDir);
  configFile = path.join(workDir, 'esi-event-action-listener.conf');
  fs.writeFileSync(configFile, sampleConfig());
  broker = await connectTestBroker();
}, 30_000);

afterAll(async () => {
  await relay?.stop();
  await broker?.cleanUp({ exchanges: [exchange], queues });
  fs.rmSync(workDir, { recursive: true, force: true });
});

describe('replacing esi-event-actions', () => {
  it('dry run: prints the listener it would create, where the script goes and the settings, without a relay; [delete] is refused (exit 1)', async () => {
    const r = await cli(['import-esi-config', configFile, '--dry-run', '-f', 'json'], null);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out).toMatchObject({
      dry_run: true,
      listeners: [
        {
          section: 'fulfill',
          result: 'would_create',
          id: null,
          script: 'fulfill.sh',
          listener: {
            workbook: '*',
            event_types: ['NOTIFICATION'],
            events: ['esi_leap.lease.fulfill.end'],
            filter: { 'data.purpose': { $regex: '^(?:test)' }, 'data.properties.vendor': { $regex: '^(?:dell)' } },
            callback: { transport: 'exec', command: 'fulfill.sh', args: ['data.node_name', 'data.fulfill_time'] },
            description: 'esi-event-actions [fulfill] from esi-event-action-listener.conf',
          },
        },
      ],
      problems: [{ section: 'delete', key: 'filter_params', line: 18, message: expect.stringMatching(/^is not valid JSON/) }],
      settings: {
        RELAY_TRANSPORTS: 'http,amqp,exec',
        RELAY_EXEC_DIR: null,
        RELAY_AMQP_INGEST_URL: 'amqp://guest:***@127.0.0.1:5672/',
        RELAY_AMQP_INGEST_QUEUES: queues.join(','),
      },
    });
    expect(r.stdout).not.toContain('guest:guest');
    expect(r.stderr).toMatch(/^error: \[delete\] filter_params \(line 18\): is not valid JSON/m);
    expect(r.stderr).toMatch(/^error: 1 part of .* could not be imported; the other sections would be created$/m);
  }, T);

  it('import, then notifications: the script runs once, for the matching one, with its arguments', async () => {
    // What the dry run said: the script in RELAY_EXEC_DIR, the relay started with the settings.
    fs.writeFileSync(
      path.join(execDir, 'fulfill.sh'),
      '#!/bin/bash\nprintf "%s\\0" "$@" > "$ESI_RECORD_DIR/$RELAY_DELIVERY_ID.args"\numask > "$ESI_RECORD_DIR/$RELAY_DELIVERY_ID.umask"\necho "fulfilled $1"\n',
      { mode: 0o755 },
    );
    relay = await spawnRelay(path.join(workDir, 'data'), {
      RELAY_TRANSPORTS: 'http,amqp,exec',
      RELAY_EXEC_DIR: execDir,
      RELAY_EXEC_ENV: 'ESI_RECORD_DIR',
      ESI_RECORD_DIR: recordDir,
      RELAY_AMQP_INGEST_URL: BROKER_URL,
      RELAY_AMQP_INGEST_QUEUES: queues.join(','),
      RELAY_AMQP_INGEST_EXCHANGE: exchange,
    });
    await waitUntil(async () => (await fetch(`${relay!.url}/readyz`)).status === 200, 15_000, () => 'the consumer did not connect');

    const r = await cli(['import-esi-config', configFile]);
    expect(r.code, r.stderr).toBe(1);
    const id = /^\[fulfill\] created listener (\S+)$/m.exec(r.stdout)?.[1];
    expect(id, r.stdout).toBeDefined();
    expect(r.stdout).toMatch(/^command: +fulfill\.sh data\.node_name data\.fulfill_time$/m);
    expect(r.stdout).toContain('  fulfill.sh\n');
    expect(r.stdout).toContain(`RELAY_AMQP_INGEST_URL=amqp://guest:***@127.0.0.1:5672/\n  RELAY_AMQP_INGEST_QUEUES=${queues.join(',')}`);
    expect(r.stdout).toContain('RELAY_TRANSPORTS=http,amqp,exec');
    expect(r.stdout).toContain('The password is shown as ***');
    expect(r.stdout).not.toContain('guest:guest');
    expect(r.stdout).not.toContain('[delete] created');
    expect(r.stderr).toContain('error: [delete] filter_params (line 18): is not valid JSON');
    expect(r.stderr).toContain("the other sections' listeners are in place");

    const listeners = (await api('GET', '/v1/listeners')).items;
    expect(listeners).toHaveLength(1);
    expect(listeners[0]).toMatchObject({
      id,
      workbook: '*',
      event_types: ['NOTIFICATION'],
      events: ['esi_leap.lease.fulfill.end'],
      callback: { transport: 'exec', command: 'fulfill.sh', args: ['data.node_name', 'data.fulfill_time'], format: 'json', timeout_ms: 60000 },
    });

    const matching = publishLease('esi_leap.lease.fulfill.end', {
      node_name: 'node-7',
      fulfill_time: '2026-11-23T10:00:00',
      purpose: 'test',
      properties: { vendor: 'dell' },
    });
    const otherVendor = publishLease('esi_leap.lease.fulfill.end', { node_name: 'node-8', fulfill_time: 'x', purpose: 'test', properties: { vendor: 'hpe' } });
    const otherType = publishLease('esi_leap.lease.delete.end', { node_name: 'node-9', expire_time: 'y', purpose: 'test', properties: { vendor: 'dell' } });

    // All three stored as events: the fan-out has decided for each.
    for (const eventId of [matching, otherVendor, otherType]) {
      await waitUntil(async () => (await fetch(`${relay!.url}/v1/events/${eventId}`, { headers: { authorization: `Bearer ${relay!.token}` } })).status === 200, 15_000, () => `event ${eventId}`);
    }
    const delivery = await waitUntil(
      async () => {
        const items = (await api('GET', `/v1/deliveries?listener_id=${id}`)).items;
        return items.length === 1 && items[0].status === 'succeeded' ? items[0] : null;
      },
      15_000,
      () => 'the delivery of the matching notification',
    );
    expect(delivery.event_id).toBe(matching);
    expect(runs()).toEqual([`${delivery.id}.args`]);
    expect(fs.readFileSync(path.join(recordDir, `${delivery.id}.args`), 'utf8').split('\0').slice(0, -1)).toEqual(['node-7', '2026-11-23T10:00:00']);
    // Scripts inherit the relay's owner-only umask.
    expect(fs.readFileSync(path.join(recordDir, `${delivery.id}.umask`), 'utf8').trim()).toBe('0077');
    const detail = await api('GET', `/v1/deliveries/${delivery.id}`);
    expect(detail.attempts).toEqual([expect.objectContaining({ number: 1, error: null, response_excerpt: 'fulfilled node-7\n' })]);
  }, T);

  it('a second import recognises the listener it made and creates nothing', async () => {
    const r = await cli(['import-esi-config', configFile, '-f', 'json']);
    expect(r.code).toBe(1);
    const out = JSON.parse(r.stdout);
    expect(out.listeners).toEqual([expect.objectContaining({ section: 'fulfill', result: 'exists' })]);
    expect((await api('GET', '/v1/listeners')).items).toHaveLength(1);
  }, T);

  it('a section whose script is not in RELAY_EXEC_DIR is refused by the relay, naming the section and key', async () => {
    const extra = path.join(workDir, 'reboot.conf');
    fs.writeFileSync(extra, `${sampleConfig().split('[fulfill]')[0]}[reboot]\nevents = esi_leap.lease.fulfill.start\nscript = /opt/esi/reboot.sh\n`);
    const r = await cli(['import-esi-config', extra]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("error: [reboot] script (line 10): callback.command: reboot.sh is not in the relay's script folder (RELAY_EXEC_DIR)");
    expect(r.stderr).not.toContain(execDir);
    expect(r.stdout).toContain('no listener was created');
    expect((await api('GET', '/v1/listeners')).items).toHaveLength(1);
  }, T);

  it('a file that is not valid configparser syntax creates nothing (exit 1), naming each line', async () => {
    const bad = path.join(workDir, 'bad.conf');
    fs.writeFileSync(bad, `${sampleConfig().replace('[delete]', '[fulfill]')}not a key\n`);
    const r = await cli(['import-esi-config', bad]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('is not a configparser file esi-event-actions could read; nothing was created:');
    expect(r.stderr).toContain('  line 14: section [fulfill] appears twice (first on line 8)');
    expect((await api('GET', '/v1/listeners')).items).toHaveLength(1);
  }, T);
});

describe('import-esi-config without a relay that runs scripts', () => {
  let plain: TestRelay;
  beforeAll(async () => {
    plain = await startTestRelay();
  });
  afterAll(async () => plain?.close());

  it('says to enable the exec transport (exit 1) and creates nothing', async () => {
    const good = path.join(workDir, 'good.conf');
    fs.writeFileSync(good, sampleConfig().split('[delete]')[0]);
    const r = await cli(['import-esi-config', good], { url: plain.url, token: TOKEN_A });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('error: the relay does not run scripts: the exec transport is not enabled there');
    expect(r.stderr).toContain('hint: start the relay with RELAY_TRANSPORTS=http,amqp,exec and RELAY_EXEC_DIR set');
    expect((await plain.api('GET', '/v1/listeners')).body.items).toHaveLength(0);
  }, T);

  it('explains itself in --help, and a missing file is a usage error (exit 2)', async () => {
    const help = await cli(['import-esi-config', '--help'], null);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--dry-run');
    expect(help.stdout).toContain('Exit codes: 0 every section imported; 1 a section was not (the others were)');
    expect(help.stdout).toContain('$ callback-relay import-esi-config esi-event-action-listener.conf --dry-run');
    const top = await cli(['--help'], null);
    expect(top.stdout).toContain('import-esi-config');
    const missing = await cli(['import-esi-config', path.join(workDir, 'nope.conf'), '--dry-run'], null);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/nope\.conf/);
  }, T);
});
