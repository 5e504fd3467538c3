import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { startRelay, type Relay } from '../src/relay.js';
import { captureLog, tempDir } from './helpers/relay.js';

/*
 * What each role serves and makes (README "PostgreSQL and several processes"): `all` and `api`
 * serve the API, its description and the dashboard, and keep the API token in the data folder
 * when RELAY_TOKENS gives none; `dispatcher` and `engine` serve only the operations routes and
 * write no token; transports are opened only where deliveries are sent or listeners checked.
 */
describe('roles', () => {
  let relay: Relay | undefined;
  afterEach(async () => {
    await relay?.close();
    relay = undefined;
  });

  for (const [role, servesApi, opensTransports] of [
    ['all', true, true],
    ['api', true, true],
    ['dispatcher', false, true],
    ['engine', false, false],
  ] as const) {
    it(`--role ${role}: ${servesApi ? 'the API, its description, the dashboard and the token' : 'the operations routes only, and no token'}`, async () => {
      const dataDir = tempDir();
      const { lines, log } = captureLog('info');
      relay = await startRelay(loadConfig({ RELAY_PORT: '0', RELAY_DATA_DIR: dataDir }), log, { role });
      const status = async (path: string) => (await fetch(relay!.url + path)).status;
      for (const path of ['/healthz', '/readyz', '/metrics']) expect(await status(path), path).toBe(200);
      // Without a token the API answers 401 where it is served, 404 where it is not.
      expect(await status('/v1/listeners')).toBe(servesApi ? 401 : 404);
      expect(await status('/openapi.yaml')).toBe(servesApi ? 200 : 404);
      expect(await status('/ui/')).toBe(servesApi ? 200 : 404);
      expect(fs.existsSync(`${dataDir}/admin.token`)).toBe(servesApi);
      const messages = lines.map((l) => l.msg);
      expect(messages.includes('no RELAY_TOKENS set: the API token is in this file')).toBe(servesApi);
      expect(messages.some((m) => m.startsWith('transports enabled'))).toBe(opensTransports);
    });
  }
});
