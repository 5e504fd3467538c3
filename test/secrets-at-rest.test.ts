import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { killAllRelays, runToExit, startRelayProcess } from './helpers/relay-process.js';
import { tempDir } from './helpers/relay.js';

/*
 * The data folder holds the signing secrets, callback header values and the admin token: a real
 * relay process (`node dist/main.js`) keeps it to its owner. The test runs its relays under the
 * common umask 022, so what the relay does not restrict itself comes out readable by everyone.
 */

const modeOf = (file: string) => fs.statSync(file).mode & 0o777;
const octal = (mode: number) => mode.toString(8).padStart(4, '0');

let previousUmask: number;
beforeEach(() => {
  previousUmask = process.umask(0o022);
});
afterEach(() => {
  process.umask(previousUmask);
});
afterAll(killAllRelays);

const env = (dataDir: string) => ({ RELAY_PORT: '0', RELAY_DATA_DIR: dataDir, RELAY_LOG_LEVEL: 'info' });

describe('files at rest', () => {
  it('creates the data folder 0700 and the database, its WAL and shared memory, and admin.token 0600', async () => {
    const dataDir = path.join(tempDir(), 'data', 'nested');
    const relay = await startRelayProcess(env(dataDir));
    try {
      expect(octal(modeOf(path.dirname(dataDir)))).toBe('0700');
      expect(octal(modeOf(dataDir))).toBe('0700');
      for (const name of ['relay.db', 'relay.db-wal', 'relay.db-shm', 'admin.token']) {
        expect(octal(modeOf(path.join(dataDir, name))), name).toBe('0600');
      }
    } finally {
      await relay.stop();
    }
  });

  it('tightens database files of its own that an earlier version left readable by others', async () => {
    const dataDir = tempDir();
    const first = await startRelayProcess(env(dataDir));
    await first.stop();
    const db = path.join(dataDir, 'relay.db');
    fs.chmodSync(db, 0o644);
    fs.writeFileSync(`${db}-wal`, '', { mode: 0o666 });
    fs.chmodSync(`${db}-wal`, 0o666);
    const second = await startRelayProcess(env(dataDir));
    try {
      for (const name of ['relay.db', 'relay.db-wal', 'relay.db-shm']) {
        expect(octal(modeOf(path.join(dataDir, name))), name).toBe('0600');
      }
    } finally {
      await second.stop();
    }
  });

  it('puts a database given by RELAY_DATABASE_URL in a new 0700 folder, 0600 itself', async () => {
    const dbDir = path.join(tempDir(), 'elsewhere');
    const relay = await startRelayProcess({ ...env(tempDir()), RELAY_DATABASE_URL: `sqlite:${dbDir}/relay.db` });
    try {
      expect(octal(modeOf(dbDir))).toBe('0700');
      for (const name of ['relay.db', 'relay.db-wal', 'relay.db-shm']) {
        expect(octal(modeOf(path.join(dbDir, name))), name).toBe('0600');
      }
    } finally {
      await relay.stop();
    }
  });
});

describe('an admin.token others may read or change', () => {
  it.each(['0644', '0640', '0604', '0620', '0602', '0666'])('is refused at start when its mode is %s, with one line saying how to fix it', async (text) => {
    const mode = parseInt(text, 8);
    const dataDir = tempDir();
    const file = path.join(dataDir, 'admin.token');
    fs.writeFileSync(file, 'rly_existing-token-value\n');
    fs.chmodSync(file, mode);

    const relay = await runToExit(env(dataDir));

    expect(relay.exit).toEqual({ code: 2, signal: null });
    const fatal = relay.logs.filter((l) => l.level >= 50);
    expect(fatal).toHaveLength(1);
    expect(fatal[0].msg).toContain(`chmod 600 ${file}`);
    expect(fatal[0].msg).toContain(octal(mode));
    expect(relay.logs.some((l) => l.msg.startsWith('callback-relay listening on'))).toBe(false);
    // The token is neither printed nor replaced, and the file is left as the owner set it.
    expect(relay.output).not.toContain('rly_existing-token-value');
    expect(fs.readFileSync(file, 'utf8')).toBe('rly_existing-token-value\n');
    expect(modeOf(file)).toBe(mode);
  });

  it('starts once the owner ran chmod 600, and keeps the token', async () => {
    const dataDir = tempDir();
    const file = path.join(dataDir, 'admin.token');
    fs.writeFileSync(file, 'rly_existing-token-value\n');
    fs.chmodSync(file, 0o644);
    expect((await runToExit(env(dataDir))).exit?.code).toBe(2);

    fs.chmodSync(file, 0o600);
    const relay = await startRelayProcess(env(dataDir));
    try {
      const res = await fetch(`${relay.url}/v1/listeners`, { headers: { authorization: 'Bearer rly_existing-token-value' } });
      expect(res.status).toBe(200);
    } finally {
      await relay.stop();
    }
  });
});
