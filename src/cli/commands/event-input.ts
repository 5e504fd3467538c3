import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { parseStorableJson, UnstorableJsonError } from '../../json-text.js';
import { UsageError } from '../errors.js';

/*
 * Reads the events `event-publish` sends: one event object, an array of events,
 * `{"events": [...]}`, or newline-delimited JSON (one event, array or wrapper per line).
 * JSON lines are read line by line; a document that spans several lines (an array, a
 * pretty-printed object) is read whole.
 */

export interface InputEvent {
  value: unknown;
  /** The 1-based input line it came from, for JSON lines. */
  line?: number;
}

/** A `{"events": [...]}` wrapper, told from an event as the API tells them: no `type`. */
const isWrapper = (v: unknown): v is { events: unknown } =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && 'events' in v && !('type' in v);

function* expand(value: unknown, where: string, line?: number): Generator<InputEvent> {
  if (Array.isArray(value)) {
    for (const v of value) yield { value: v, line };
  } else if (isWrapper(value)) {
    if (!Array.isArray(value.events)) throw new UsageError(`${where}: "events" must be an array of events`);
    for (const v of value.events) yield { value: v, line };
  } else {
    yield { value, line };
  }
}

const jsonError = (err: unknown) => (err as Error).message.replace(/^JSON\.parse: /, '');

export async function* readEvents(input: NodeJS.ReadableStream, name: string): AsyncGenerator<InputEvent> {
  const lines = readline.createInterface({ input, crlfDelay: Infinity });
  // Errors of the stream (EISDIR, EIO) do not always reach the line iterator: keep the first.
  let streamError: Error | undefined;
  input.once('error', (err: Error) => {
    streamError = err;
    lines.close();
  });

  const unreadable = (err: Error) =>
    new UsageError(`cannot read ${name} (${(err as NodeJS.ErrnoException).code ?? err.message})`);

  let n = 0;
  let mode: 'lines' | 'document' | undefined;
  let firstLineError = '';
  const document: string[] = [];
  try {
    for await (const raw of lines) {
      n++;
      const line = n === 1 ? raw.replace(/^\uFEFF/, '') : raw;
      if (mode === 'document') {
        document.push(line);
        continue;
      }
      if (!line.trim()) {
        if (!mode) document.push(line);
        continue;
      }
      let value: unknown;
      try {
        value = parseStorableJson(line);
      } catch (err) {
        if (err instanceof UnstorableJsonError) throw new UsageError(`${name} line ${n}: ${err.message}`);
        if (mode === 'lines') throw new UsageError(`${name} line ${n} is not valid JSON (${jsonError(err)})`);
        // The first line is not a whole JSON value: a document over several lines, or bad input.
        mode = 'document';
        firstLineError = `line ${n}: ${jsonError(err)}`;
        document.push(line);
        continue;
      }
      mode = 'lines';
      yield* expand(value, `${name} line ${n}`, n);
    }
  } catch (err) {
    throw err instanceof UsageError ? err : unreadable(err as Error);
  } finally {
    // Stops reading when the caller gives up early (a failed batch), so the process can end.
    lines.close();
    (input as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
  }
  if (streamError) throw unreadable(streamError);
  if (mode !== 'document') return;

  let value: unknown;
  try {
    value = parseStorableJson(document.join('\n'));
  } catch (err) {
    if (err instanceof UnstorableJsonError) throw new UsageError(`${name}: ${err.message}`);
    throw new UsageError(
      `${name} is neither one JSON document (${jsonError(err)}) nor JSON lines (${firstLineError})`,
    );
  }
  yield* expand(value, name);
}

/** The events of FILE, or of stdin for `-` or no FILE. */
export async function openInput(
  file: string | undefined,
  cwd: string,
  stdin: (NodeJS.ReadableStream & { isTTY?: boolean }) | undefined,
): Promise<{ stream: NodeJS.ReadableStream; name: string }> {
  if (file === undefined || file === '-') {
    const input = stdin ?? process.stdin;
    if (file === undefined && input.isTTY) {
      throw new UsageError('no FILE given and stdin is a terminal: give a FILE, "-" to type events, or pipe them in');
    }
    return { stream: input, name: 'stdin' };
  }
  const resolved = path.resolve(cwd, file);
  let handle: fs.promises.FileHandle;
  try {
    handle = await fs.promises.open(resolved, 'r');
    if ((await handle.stat()).isDirectory()) {
      await handle.close();
      throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    }
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'it is a directory' : (code ?? (err as Error).message);
    throw new UsageError(`cannot read ${file}: ${why}`);
  }
  return { stream: handle.createReadStream({ encoding: 'utf8' }), name: file };
}
