import type { CliIo } from '../context.js';
import { UsageError } from '../errors.js';
import { jsonObject } from '../options.js';
import { openInput } from './event-input.js';

/** Read whole: a workbook is at most 1 MiB (the API's body limit), an execution input less. */
const MAX_TEXT_BYTES = 1024 * 1024;

/** All of FILE, or of stdin for `-`, as UTF-8 without a BOM; unreadable, empty or too large input is a usage error. */
export async function readText(file: string, io: CliIo): Promise<{ text: string; name: string }> {
  const { stream, name } = await openInput(file, io.cwd, io.stdin);
  const chunks: Buffer[] = [];
  let bytes = 0;
  try {
    for await (const chunk of stream) {
      const buffer = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : (chunk as Buffer);
      bytes += buffer.length;
      if (bytes > MAX_TEXT_BYTES) throw new UsageError(`${name} is larger than 1 MiB, the most the relay takes`);
      chunks.push(buffer);
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`cannot read ${name} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  } finally {
    (stream as NodeJS.ReadableStream & { destroy?: () => void }).destroy?.();
  }
  const text = Buffer.concat(chunks).toString('utf8').replace(/^\uFEFF/, '');
  if (!text.trim()) throw new UsageError(`${name} is empty`);
  return { text, name };
}

/** A JSON object from FILE (or stdin for `-`), as `--input-file` takes it. */
export async function readJsonObject(file: string, io: CliIo): Promise<Record<string, unknown>> {
  const { text, name } = await readText(file, io);
  try {
    return jsonObject(text);
  } catch (err) {
    throw new UsageError(`${name}: ${(err as Error).message}`);
  }
}

/**
 * The media type a workbook is sent as: by the file's extension, else JSON when the text is a
 * JSON object and YAML otherwise (a YAML flow mapping also starts with "{").
 */
export function workbookMediaType(name: string, text: string): 'application/json' | 'application/yaml' {
  if (/\.ya?ml$/i.test(name)) return 'application/yaml';
  if (/\.json$/i.test(name)) return 'application/json';
  if (!text.trimStart().startsWith('{')) return 'application/yaml';
  try {
    JSON.parse(text);
    return 'application/json';
  } catch {
    return 'application/yaml';
  }
}
