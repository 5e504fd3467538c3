/**
 * How deep objects and arrays may nest in a request body. Parsing itself copes with any depth,
 * but validation, serialisation and the matchers walk values recursively: a body nested
 * thousands of levels deep would end in a stack overflow (a 500) instead of a clear 400.
 */
export const MAX_JSON_DEPTH = 64;

/** The deepest nesting of `[` and `{` in JSON text, outside strings; stops counting past `limit`. */
export function jsonDepth(text: Buffer | string, limit = Infinity): number {
  const bytes = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const c = bytes[i];
    if (inString) {
      if (c === 0x5c) i++; // a backslash escapes the next byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) {
      inString = true;
    } else if (c === 0x5b || c === 0x7b) {
      if (++depth > max && (max = depth) > limit) return max;
    } else if (c === 0x5d || c === 0x7d) {
      depth--;
    }
  }
  return max;
}
