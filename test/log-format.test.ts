import fs from 'node:fs';
import { spawn } from 'node:child_process';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startRelay, type Relay } from '../src/relay.js';
import { killAllRelays, MAIN_JS, RelayProcess, relayEnv, ROOT, runToExit, startRelayProcess } from './helpers/relay-process.js';
import { captureLog, request, tempDir, TOKEN_A } from './helpers/relay.js';

/*
 * Log lines for people and for machines: JSON lines when stdout is a pipe (services, log
 * collectors), readable lines on a terminal or with RELAY_LOG_FORMAT=pretty; and the request
 * log keeps probes and the CLI's reads out of the info level. Run `npm run build` first.
 */

const ANSI = /\x1b\[/;
const isJson = (line: string) => {
  try {
    JSON.parse(line);
    return true;
  } catch {
    return false;
  }
};

afterAll(killAllRelays);

async function waitForLine(relay: RelayProcess, match: (line: string) => boolean, timeoutMs = 20_000): Promise<string> {
  return vi.waitFor(
    () => {
      const found = relay.stdoutLines.find(match);
      if (found === undefined) throw new Error(`no such line yet; stdout:\n${relay.stdoutLines.join('\n')}\nstderr:\n${relay.stderr}`);
      return found;
    },
    { timeout: timeoutMs, interval: 50 },
  );
}

describe('RELAY_LOG_FORMAT', () => {
  it('pretty: readable lines without colours on a pipe, up to the last line before exit', async () => {
    const relay = new RelayProcess({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_LOG_FORMAT: 'pretty' });
    const listening = await waitForLine(relay, (l) => l.includes('callback-relay listening on'));
    expect(isJson(listening)).toBe(false);
    expect(listening).toMatch(/^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\] INFO: callback-relay listening on http:\/\/127\.0\.0\.1:\d+$/);
    expect(relay.stdoutLines.join('\n')).not.toMatch(ANSI);
    // Fields follow their message, indented, one per line.
    expect(relay.stdoutLines[relay.stdoutLines.indexOf(listening) + 1]).toMatch(/^ {4}url: "http:\/\/127\.0\.0\.1:\d+"$/);
    expect(await relay.stop()).toEqual({ code: 0, signal: null });
    // Written synchronously: the last line is out before the process is gone.
    expect(relay.stdoutLines.at(-1)).toMatch(/INFO: stopped$/);
  });

  it('json by default when stdout is not a terminal: every line is a JSON log line', async () => {
    const relay = await startRelayProcess({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir() });
    expect(relay.stdoutLines.length).toBeGreaterThan(1);
    for (const line of relay.stdoutLines) expect(isJson(line), line).toBe(true);
    expect(await relay.stop()).toEqual({ code: 0, signal: null });
  });

  it('pretty with colours by default when stdout is a terminal', async () => {
    // util-linux `script` gives the relay a pseudo-terminal as its stdout.
    const child = spawn('script', ['-qfec', `${JSON.stringify(process.execPath)} ${JSON.stringify(MAIN_JS)}`, '/dev/null'], {
      cwd: ROOT,
      env: relayEnv({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir() }),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
    child.stderr!.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = new Promise((resolve) => child.once('exit', resolve));
    try {
      await vi.waitFor(
        () => {
          if (!out.includes('callback-relay listening on')) throw new Error(`not listening yet: ${out}`);
        },
        { timeout: 20_000, interval: 50 },
      );
      const plain = out.replace(/\x1b\[[0-9;]*m/g, '');
      expect(out).toMatch(ANSI);
      expect(plain).toMatch(/\] INFO: callback-relay listening on http:\/\/127\.0\.0\.1:\d+/);
      expect(plain).not.toMatch(/"msg":/);
    } finally {
      // `script` ends the relay it started when it is told to stop.
      child.kill('SIGTERM');
      await exited;
    }
  });

  it('a bad value stops the relay with exit code 2, naming the variable', async () => {
    const relay = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_LOG_FORMAT: 'yaml' });
    expect(relay.exit).toEqual({ code: 2, signal: null });
    expect(relay.stderr).toMatch(/^callback-relay: bad configuration: RELAY_LOG_FORMAT: .*"json".*"pretty".*\(got "yaml"\)\n$/);
  });

  it('a host name that does not resolve stops the relay with exit code 2, naming RELAY_HOST', async () => {
    const dataDir = tempDir();
    const relay = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: dataDir, RELAY_HOST: 'no-such-host.invalid' });
    expect(relay.exit).toEqual({ code: 2, signal: null });
    expect(relay.stderr).toBe('callback-relay: bad configuration: RELAY_HOST: "no-such-host.invalid" does not resolve to an address (ENOTFOUND)\n');
    // Said before anything was made: no database, no admin token.
    expect(fs.readdirSync(dataDir)).toEqual([]);
  });

  it('a data folder that cannot be one stops the relay with exit code 2, naming the variable, before anything is made', async () => {
    const file = `${tempDir()}/a-file`;
    fs.writeFileSync(file, 'not a folder');
    const relay = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: file });
    expect(relay.exit).toEqual({ code: 2, signal: null });
    expect(relay.stderr).toBe(`callback-relay: bad configuration: RELAY_DATA_DIR: ${JSON.stringify(file)} cannot be a folder this process writes in: EEXIST\n`);
    expect(fs.readFileSync(file, 'utf8')).toBe('not a folder');
    // sysfs takes no folders, whoever asks (root included).
    const refused = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: '/sys/callback-relay-data', RELAY_DATABASE_URL: `sqlite:${tempDir()}/relay.db` });
    expect(refused.exit).toEqual({ code: 2, signal: null });
    expect(refused.stderr).toBe('callback-relay: bad configuration: RELAY_DATA_DIR: "/sys/callback-relay-data" cannot be a folder this process writes in: EPERM\n');
    // procfs answers ENOENT for a folder made in it, which Node's recursive mkdir tries again forever.
    const proc = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: '/proc/callback-relay-data/deeper' });
    expect(proc.exit).toEqual({ code: 2, signal: null });
    expect(proc.stderr).toBe('callback-relay: bad configuration: RELAY_DATA_DIR: "/proc/callback-relay-data/deeper" cannot be a folder this process writes in: ENOENT (/proc/callback-relay-data)\n');
    const database = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_DATABASE_URL: `sqlite:${file}/relay.db` });
    expect(database.exit).toEqual({ code: 2, signal: null });
    expect(database.stderr).toBe(`callback-relay: bad configuration: RELAY_DATABASE_URL: ${JSON.stringify(file)} cannot be a folder this process writes in: EEXIST\n`);
  });

  it('an address not of this machine stops the relay with exit code 2, naming RELAY_HOST', async () => {
    // 192.0.2.1 is TEST-NET-1 (RFC 5737): no machine has it.
    const relay = await runToExit({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_HOST: '192.0.2.1' });
    expect(relay.exit).toEqual({ code: 2, signal: null });
    expect(relay.stderr).toBe('callback-relay: bad configuration: RELAY_HOST: "192.0.2.1" is no address of this machine (EADDRNOTAVAIL)\n');
  });

  it('takes an IP address or a host name for RELAY_HOST, and never quotes a password back', () => {
    const base = { RELAY_DATA_DIR: tempDir() };
    for (const host of ['127.0.0.1', '0.0.0.0', '::', '::1', 'localhost', 'relay-1.example.org']) expect(loadConfig({ ...base, RELAY_HOST: host }).host).toBe(host);
    for (const host of ['not a host', '999.1.1.1', 'http://localhost', '-x', 'a..b']) {
      expect(() => loadConfig({ ...base, RELAY_HOST: host }), host).toThrow(/^RELAY_HOST: an IP address or a host name/);
    }
    expect(() => loadConfig({ ...base, RELAY_DATABASE_URL: 'mysql://relay:hunter2@db.example.org/relay' })).toThrow(
      /^RELAY_DATABASE_URL: .*\(got "mysql:\/\/relay:\*\*\*@db\.example\.org\/relay"\)$/,
    );
    expect(() => loadConfig({ ...base, RELAY_DATABASE_URL: 'sqlite:' })).toThrow(/^RELAY_DATABASE_URL: /);
  });

  it('defaults to pretty on a terminal and json elsewhere; a set value wins either way', () => {
    const base = { RELAY_DATA_DIR: tempDir() };
    expect(loadConfig(base, true).logFormat).toBe('pretty');
    expect(loadConfig(base, false).logFormat).toBe('json');
    expect(loadConfig({ ...base, RELAY_LOG_FORMAT: 'json' }, true).logFormat).toBe('json');
    expect(loadConfig({ ...base, RELAY_LOG_FORMAT: 'pretty' }, false).logFormat).toBe('pretty');
    expect(loadConfig({ ...base, RELAY_LOG_FORMAT: '' }, false).logFormat).toBe('json');
    expect(() => loadConfig({ ...base, RELAY_LOG_FORMAT: 'PRETTY' }, true)).toThrow(/^RELAY_LOG_FORMAT: /);
  });
});

describe('the request log', () => {
  let relay: Relay | undefined;

  afterEach(async () => {
    await relay?.close();
    relay = undefined;
  });

  async function start(level: string) {
    const { lines, log } = captureLog(level);
    const config = loadConfig({ RELAY_PORT: '0', RELAY_DATA_DIR: tempDir(), RELAY_TOKENS: `${TOKEN_A}=project-a` });
    relay = await startRelay(config, log);
    const url = relay.url;
    const cli = { 'user-agent': 'callback-relay-cli/0.1.0' };
    for (const path of ['/healthz', '/readyz', '/metrics']) expect((await fetch(url + path)).status).toBe(200);
    expect((await request(url, 'GET', '/v1/listeners', undefined, { headers: cli })).status).toBe(200);
    expect((await request(url, 'GET', '/v1/events', undefined, { headers: cli })).status).toBe(200);
    expect((await request(url, 'GET', '/v1/events')).status).toBe(200);
    expect((await request(url, 'POST', '/v1/events', { type: 'x.y' }, { headers: cli })).status).toBe(202);
    expect((await request(url, 'GET', '/v1/listeners/lst_nope', undefined, { headers: cli })).status).toBe(404);
    // The line is written when the answer is finished, a moment after the client has it.
    await new Promise((resolve) => setTimeout(resolve, 100));
    return lines.filter((l) => l.msg === 'request completed').map((l) => [l.level, l.req!.method, l.req!.url]);
  }

  it('at info: no probes, no CLI reads; other reads, CLI writes and failed CLI reads are there', async () => {
    expect(await start('info')).toEqual([
      [30, 'GET', '/v1/events'],
      [30, 'POST', '/v1/events'],
      [40, 'GET', '/v1/listeners/lst_nope'],
    ]);
  });

  it('at debug: probes and CLI reads too, at debug', async () => {
    expect(await start('debug')).toEqual([
      [20, 'GET', '/healthz'],
      [20, 'GET', '/readyz'],
      [20, 'GET', '/metrics'],
      [20, 'GET', '/v1/listeners'],
      [20, 'GET', '/v1/events'],
      [30, 'GET', '/v1/events'],
      [30, 'POST', '/v1/events'],
      [40, 'GET', '/v1/listeners/lst_nope'],
    ]);
  });
});
