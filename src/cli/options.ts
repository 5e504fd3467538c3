import { InvalidArgumentError } from 'commander';
import { z } from 'zod';
import { parseStorableJson, UnstorableJsonError } from '../json-text.js';

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

/** `--retry-schedule 5000,60000`: the delays in ms between tries; `none` for a single try. */
export const retrySchedule = (value: string): number[] => {
  if (value.trim() === 'none') return [];
  const items = split(value);
  if (!items.length || items.some((s) => !/^\d+$/.test(s))) {
    throw new InvalidArgumentError(`expected delays in milliseconds such as 5000,60000 (or none), got '${value}'.`);
  }
  return items.map(Number);
};

export const jsonObject = (value: string): Record<string, unknown> => {
  let parsed: unknown;
  try {
    parsed = parseStorableJson(value);
  } catch (err) {
    if (err instanceof UnstorableJsonError) throw new InvalidArgumentError(`${err.message}.`);
    throw new InvalidArgumentError(`not valid JSON (${(err as Error).message}).`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new InvalidArgumentError('expected a JSON object.');
  }
  return parsed as Record<string, unknown>;
};

// The API's own check, so that what passes here is what the relay accepts.
const isoDateTime = z.iso.datetime({ offset: true });

/** An RFC 3339 date-time with a zone, as the API's `since`/`until` take them. */
export const dateTime = (value: string): string => {
  const text = value.trim();
  if (!isoDateTime.safeParse(text).success) {
    throw new InvalidArgumentError(`"${value}" is not a date-time with a zone, such as 2026-11-23T10:00:00Z or 2026-11-23T11:00:00+01:00.`);
  }
  return text;
};

/** A value that must not be empty (ids, names, filters). */
export const nonEmpty = (value: string): string => {
  if (!value.trim()) throw new InvalidArgumentError('give a non-empty value.');
  return value.trim();
};

/** A `next_cursor` the API returned: base64url. */
export const cursorText = (value: string): string => {
  if (!/^[A-Za-z0-9_-]+$/.test(value.trim())) throw new InvalidArgumentError('not a cursor: copy the next_cursor of an earlier page.');
  return value.trim();
};
