import { parseEnvelopePath, readEnvelopePath } from '../records/envelope-path.js';
import { EventEnvelope } from '../records/event.js';
import type { FieldProblem, TransportAttempt } from './contract.js';

/*
 * What a script action receives (DESIGN.md, "Script actions"): an argument vector read from the
 * envelope with the filters' path reader, and an environment that holds only what the relay
 * chooses to pass. Nothing here goes through a shell, so a value is one argument whatever it
 * contains.
 */

const ENVELOPE_FIELDS: readonly string[] = Object.keys(EventEnvelope.shape);

/** The variables the relay sets itself; RELAY_EXEC_ENV cannot name them. */
export const RELAY_EXEC_VARIABLES = ['PATH', 'RELAY_DELIVERY_ID', 'RELAY_ATTEMPT', 'RELAY_EVENT_TYPE', 'RELAY_GAP'] as const;

/** Used when the relay itself runs without PATH. */
export const FALLBACK_PATH = '/usr/local/bin:/usr/bin:/bin';

/** One envelope value as one argument: missing or null → "", scalars → their text, objects and arrays → JSON. */
export function argumentText(value: unknown): string {
  if (value === undefined || value === null) return '';
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return JSON.stringify(value) ?? '';
}

/** The argument vector for `paths` (dot paths into the envelope), one argument per path. */
export function execArguments(envelope: unknown, paths: readonly string[]): string[] {
  return paths.map((p) => argumentText(readEnvelopePath(envelope, p)));
}

/** The index of the first argument no program can receive (it holds NUL), or -1. */
export function unpassableArgument(args: readonly string[]): number {
  return args.findIndex((a) => a.includes('\0'));
}

/** Problems with `args` as paths: each must parse and start at a field of the envelope. */
export function argumentPathProblems(args: unknown): FieldProblem[] {
  if (!Array.isArray(args)) return [];
  const problems: FieldProblem[] = [];
  args.forEach((entry, i) => {
    if (typeof entry !== 'string') return;
    const field = `callback.args.${i}`;
    const parsed = parseEnvelopePath(entry);
    if ('error' in parsed) {
      problems.push({ field, message: parsed.error });
    } else if (parsed.segments[0].exact || !ENVELOPE_FIELDS.includes(parsed.segments[0].key)) {
      problems.push({
        field,
        message: `"${entry}" does not start at a field of the event envelope (${ENVELOPE_FIELDS.join(', ')}); the payload is under data., e.g. data.${entry}`,
      });
    }
  });
  return problems;
}

/**
 * The script's whole environment: PATH, the attempt's RELAY_* facts, and the variables the
 * operator passes through by name (RELAY_EXEC_ENV) that are set in the relay's own environment.
 */
export function execEnvironment(
  attempt: Pick<TransportAttempt, 'deliveryId' | 'attemptNumber' | 'envelope' | 'gap'>,
  passThrough: readonly string[],
  source: NodeJS.ProcessEnv,
): Record<string, string> {
  const env: Record<string, string> = {};
  for (const name of passThrough) {
    const value = source[name];
    if (value !== undefined) env[name] = value;
  }
  env.PATH = source.PATH || FALLBACK_PATH;
  env.RELAY_DELIVERY_ID = attempt.deliveryId;
  env.RELAY_ATTEMPT = String(attempt.attemptNumber);
  env.RELAY_EVENT_TYPE = attempt.envelope.type;
  if (attempt.gap !== null && attempt.gap.length > 0) env.RELAY_GAP = attempt.gap.join(',');
  return env;
}
