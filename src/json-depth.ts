/**
 * How deep objects and arrays may nest in a request body. Parsing itself copes with any depth,
 * but validation, serialisation and the matchers walk values recursively: a body nested
 * thousands of levels deep would end in a stack overflow (a 500) instead of a clear 400.
 */
export const MAX_JSON_DEPTH = 64;

const isDigit = (c: number) => c >= 0x30 && c <= 0x39;

/** What one pass over JSON text finds outside its strings. */
export interface JsonShape {
  /** The deepest nesting of `[` and `{`; counting stops past the limit given. */
  depth: number;
  /**
   * A number that may be beyond what a double holds: an exponent of three digits or more, or an
   * integer part of 309 digits or more (json-text.ts tells which really are).
   */
  largeNumber: boolean;
}

/** Walks JSON text once, outside strings; stops as soon as the depth passes `limit`. */
export function jsonShape(text: Buffer | string, limit = Infinity): JsonShape {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  let depth = 0;
  let max = 0;
  let largeNumber = false;
  let digits = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next byte
      else if (c === 0x22) inString = false;
    } else if (isDigit(c)) {
      if (++digits >= 309) largeNumber = true;
      continue;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max && (max = depth) > limit) break;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    } else if (c === 0x2e) {
      // a fraction: its digits make a number no larger
      let j = i + 1;
      while (j < bytes.length && isDigit(bytes[j])) j++;
      i = j - 1;
    } else if (c === 0x65 || c === 0x45) {
      // e or E outside a string: an exponent (true and false have no digits after theirs)
      let j = i + 1;
      if (bytes[j] === 0x2b || bytes[j] === 0x2d) j++;
      const from = j;
      while (j < bytes.length && isDigit(bytes[j])) j++;
      if (j - from >= 3) largeNumber = true;
      i = j - 1;
    }
    digits = 0;
  }
  return { depth: max, largeNumber };
}
