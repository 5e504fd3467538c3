import { InvalidArgumentError } from 'commander';

/** Option parsers; an InvalidArgumentError becomes a usage error (exit code 2). */

const split = (value: string) => value.split(',').map((s) => s.trim()).filter(Boolean);

/** Repeatable and comma-separated: `--event a --event b,c` → [a, b, c]. */
export const collectList = (value: string, previous: string[] | undefined): string[] => {
  const items = split(value);
  if (!items.length) throw new InvalidArgumentError('give at least one value');
  return [...(previous ?? []), ...items];
};

/** Like collectList, upper-cased and limited to `allowed`. */
export const collectChoices =
  (allowed: readonly string[]) =>
  (value: string, previous: string[] | undefined): string[] => {
    const items = collectList(value, undefined).map((s) => s.toUpperCase());
    const bad = items.find((s) => !allowed.includes(s));
    if (bad) throw new InvalidArgumentError(`"${bad}" is not one of ${allowed.join(', ')}.`);
    return [...(previous ?? []), ...items];
  };

export const upperChoice = (allowed: readonly string[]) => (value: string): string => {
  const upper = value.trim().toUpperCase();
  if (!allowed.includes(upper)) throw new InvalidArgumentError(`"${value}" is not one of ${allowed.join(', ')}.`);
  return upper;
};

/** `--header 'Name: value'`, repeatable; a later value for the same name wins. */
export const collectHeader = (value: string, previous: Record<string, string> | undefined): Record<string, string> => {
  const match = /^\s*([^\s:]+)\s*:(.*)$/s.exec(value);
  if (!match) throw new InvalidArgumentError(`expected 'Name: value', got '${value}'.`);
  return { ...previous, [match[1]]: match[2].trim() };
};

export const collect = (value: string, previous: string[] | undefined): string[] => [...(previous ?? []), value];

export const intInRange = (min: number, max: number) => (value: string): number => {
  if (!/^\d+$/.test(value.trim()) || Number(value) < min || Number(value) > max) {
    throw new InvalidArgumentError(`expected a whole number from ${min} to ${max}.`);
  }
  return Number(value);
};

export const jsonObject = (value: string): Record<string, unknown> => {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch (err) {
    throw new InvalidArgumentError(`not valid JSON (${(err as Error).message}).`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError('expected a JSON object.');
  }
  return parsed as Record<string, unknown>;
};
