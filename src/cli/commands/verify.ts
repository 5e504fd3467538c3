import { InvalidArgumentError, type Command } from 'commander';
import { action, type CliIo } from '../context.js';
import { CommandFailedError, UsageError } from '../errors.js';
import { helpExamples as examples } from '../output.js';
import { DEFAULT_TOLERANCE_SECONDS, secretKey, verifyWebhook, type VerifyFailure } from '../webhook-signature.js';

/** A request as a capture saved it: request line, headers, blank line, body. */
export interface SavedRequest {
  requestLine: string | null;
  /** Lower-case names; repeated headers joined as HTTP joins them. */
  headers: Record<string, string>;
  body: Buffer;
  /** What was odd about the capture, though it could still be read. */
  notes: string[];
}

const REQUEST_LINE = /^[A-Z]+ \S+ HTTP\/\d(?:\.\d)?$/;

/** Chunked transfer coding, as a raw capture of a streamed body holds it. */
function dechunk(raw: Buffer): Buffer {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const lineEnd = raw.indexOf('\r\n', at);
    if (lineEnd < 0) throw new UsageError('the chunked body ends without its last (zero-size) chunk: the capture is cut');
    const size = Number.parseInt(raw.subarray(at, lineEnd).toString('latin1').split(';')[0].trim(), 16);
    if (!Number.isSafeInteger(size) || size < 0) throw new UsageError('the chunked body has a malformed chunk size');
    if (size === 0) return Buffer.concat(parts);
    parts.push(raw.subarray(lineEnd + 2, lineEnd + 2 + size));
    at = lineEnd + 2 + size + 2;
  }
}

export function parseSavedRequest(raw: Buffer): SavedRequest {
  const crlf = raw.indexOf('\r\n\r\n');
  const lf = raw.indexOf('\n\n');
  const [end, gap] = crlf >= 0 && (lf < 0 || crlf < lf) ? [crlf, 4] : [lf, 2];
  if (end < 0) throw new UsageError('no blank line after the headers: expected a saved HTTP request (request line, headers, blank line, body)');
  const lines = raw.subarray(0, end).toString('latin1').split(/\r?\n/);
  const requestLine = REQUEST_LINE.test(lines[0].trim()) ? lines.shift()!.trim() : null;
  const headers: Record<string, string> = {};
  for (const line of lines) {
    const colon = line.indexOf(':');
    if (colon <= 0) throw new UsageError(`"${line.slice(0, 80)}" is not a header line (Name: value)`);
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = Object.hasOwn(headers, name) ? `${headers[name]}, ${value}` : value;
  }
  if (!headers['webhook-id'] && !headers['webhook-signature'] && !requestLine) {
    throw new UsageError('this does not look like a saved HTTP request: no request line and no webhook headers');
  }
  const notes: string[] = [];
  let body = raw.subarray(end + gap);
  if (/\bchunked\b/i.test(headers['transfer-encoding'] ?? '')) body = dechunk(body);
  else if (headers['content-length'] !== undefined) {
    const length = Number(headers['content-length']);
    if (Number.isSafeInteger(length) && body.length > length) {
      notes.push(`ignored ${body.length - length} byte(s) after the body's content-length of ${length} (a newline an editor added?)`);
      body = body.subarray(0, length);
    } else if (Number.isSafeInteger(length) && body.length < length) {
      notes.push(`the body is ${body.length} bytes, shorter than its content-length of ${length}: the capture may be cut`);
    }
  }
  return { requestLine, headers, body, notes };
}

const HINTS: Partial<Record<VerifyFailure, string>> = {
  'no-matching-signature':
    'is it this listener\'s secret (the one listener-add or listener-rotate-secret printed)? After a rotation the relay signs with ' +
    'both secrets for 24 h; a proxy that rewrites the body (reformatted JSON, another charset) breaks every signature',
  'timestamp-too-old': 'for an old capture add --no-timestamp-check (or a larger --tolerance); otherwise check both machines\' clocks',
  'timestamp-too-new': 'check both machines\' clocks (e.g. timedatectl or chronyc tracking)',
  'missing-headers': 'save the whole request: request line, headers, blank line, body (nc -l PORT > request.txt)',
};

interface VerifyOptions {
  secret: string;
  tolerance?: number;
  timestampCheck: boolean;
}

const seconds = (value: string): number => {
  if (!/^\d+$/.test(value.trim())) throw new InvalidArgumentError('expected whole seconds, such as 300.');
  return Number(value);
};

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
  return Buffer.concat(chunks);
}

export function registerVerifyCommand(program: Command, io: CliIo): void {
  program
    .command('verify')
    .summary('check the signature of a saved delivery')
    .description(
      'Check the Standard Webhooks signature of a delivery saved as a raw HTTP request (request line, headers, blank line, ' +
        'body, as nc -l or a proxy captures it), read from stdin, against a listener\'s secret. ' +
        `Exit 0 valid, 1 invalid (and why), 2 usage. The timestamp may be at most --tolerance seconds off (default ${DEFAULT_TOLERANCE_SECONDS}).`,
    )
    .requiredOption('--secret <whsec>', "the listener's signing secret (whsec_…)")
    .option('--tolerance <seconds>', `how far the timestamp may be from now (default: ${DEFAULT_TOLERANCE_SECONDS})`, seconds)
    .option('--no-timestamp-check', 'do not check the timestamp\'s age (old captures); the signature still covers it')
    .addHelpText(
      'after',
      examples([
        'nc -l 9000 > request.txt   # then point a listener at http://127.0.0.1:9000/',
        'callback-relay verify --secret whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw < request.txt',
        'callback-relay verify --secret "$SECRET" --no-timestamp-check -f json < old-request.txt',
      ]),
    )
    .action(
      action<[], VerifyOptions>(io, async (ctx, _args, opts) => {
        if (!opts.timestampCheck && opts.tolerance !== undefined) throw new UsageError('--tolerance and --no-timestamp-check contradict each other; give one');
        if (!secretKey(opts.secret)) throw new UsageError('--secret is not whsec_ followed by base64');
        const stdin = io.stdin ?? process.stdin;
        if (stdin.isTTY) throw new UsageError('give the saved request on stdin: callback-relay verify --secret whsec_… < request.txt');
        const raw = await readAll(stdin);
        if (raw.length === 0) throw new UsageError('stdin is empty: give the saved request on stdin');
        const request = parseSavedRequest(raw);
        const nowSeconds = Math.floor(Date.now() / 1000);
        const verdict = verifyWebhook({
          secret: opts.secret,
          headers: request.headers,
          body: request.body,
          nowSeconds,
          toleranceSeconds: opts.timestampCheck ? (opts.tolerance ?? DEFAULT_TOLERANCE_SECONDS) : null,
        });
        const timestamp = Number(request.headers['webhook-timestamp']);
        const summary = {
          valid: verdict.valid,
          ...(!verdict.valid && { reason: verdict.reason, message: verdict.message }),
          webhook_id: request.headers['webhook-id'] ?? null,
          timestamp: Number.isSafeInteger(timestamp) ? timestamp : null,
          age_seconds: Number.isSafeInteger(timestamp) ? nowSeconds - timestamp : null,
          body_bytes: request.body.length,
          notes: request.notes,
        };
        for (const note of request.notes) io.stderr(`note: ${note}\n`);
        if (ctx.output === 'json') ctx.print.json(summary);
        if (!verdict.valid) throw new CommandFailedError(`INVALID signature: ${verdict.message}`, HINTS[verdict.reason]);
        if (ctx.output !== 'json') {
          ctx.print.line(`valid: signed with this secret (webhook-id ${summary.webhook_id}, timestamp ${summary.timestamp}, ${summary.age_seconds} s ago)`);
        }
      }),
    );
}
