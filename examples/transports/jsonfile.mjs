// A complete transport module for callback-relay: each delivery is appended to a file as one
// JSON line. Load it with
//
//   RELAY_TRANSPORT_MODULES=examples/transports/jsonfile.mjs npm start
//
// and register a listener whose callback is {"transport": "jsonfile", "path": "deliveries.jsonl"}.
// The relay signs, retries and records attempts for it as for any other transport.
//
// The contract (DESIGN.md, "Transports"): the default export is {name, validate, check?, send,
// close}. `validate` checks this transport's own callback fields; `send` never throws: every
// failure is an outcome with a stable error code, retried on the listener's schedule.
import { appendFile, mkdir } from 'node:fs/promises';
import path from 'node:path';

// Where files may be written: JSONFILE_DIR, else ./data/jsonfile. A callback names a file
// inside it, never a path outside.
const root = path.resolve(process.env.JSONFILE_DIR ?? 'data/jsonfile');
const FILE_NAME = /^[A-Za-z0-9._-]{1,200}$/;
const OWN_FIELDS = new Set(['transport', 'path', 'format', 'headers', 'timeout_ms']);

let closed = false;

export default {
  name: 'jsonfile',

  validate(callback) {
    const problems = [];
    if (typeof callback.path !== 'string' || !FILE_NAME.test(callback.path) || callback.path.startsWith('.')) {
      problems.push({ field: 'callback.path', message: `a file name (letters, digits, . _ -) inside ${root}` });
    }
    for (const key of Object.keys(callback)) {
      if (!OWN_FIELDS.has(key)) problems.push({ field: `callback.${key}`, message: 'not a field of a jsonfile callback' });
    }
    return problems;
  },

  async send(attempt) {
    if (closed) return { ok: false, error: 'TRANSPORT_CLOSED', message: 'the jsonfile transport was closed' };
    const line = JSON.stringify({
      delivery_id: attempt.deliveryId,
      attempt: attempt.attemptNumber,
      listener_id: attempt.listenerId,
      content_type: attempt.contentType,
      headers: attempt.headers,
      body: attempt.body,
    });
    try {
      await mkdir(root, { recursive: true });
      await appendFile(path.join(root, attempt.callback.path), `${line}\n`);
      return { ok: true };
    } catch (err) {
      return { ok: false, error: err.code ?? 'WRITE_ERROR', message: `cannot append to ${attempt.callback.path}: ${err.message}` };
    }
  },

  async close() {
    closed = true;
  },
};
