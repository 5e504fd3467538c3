/*
 * An esi-event-actions configuration file, read with the rules of Python's configparser as that
 * tool uses it (`configparser.ConfigParser()` with its defaults; INTEROP.md):
 * - `[name]` starts a section (text after the closing bracket is ignored, as Python does); the
 *   same section twice is an error; `[DEFAULT]` may appear more than once and its keys are
 *   inherited by every section;
 * - `key = value` or `key: value` (the first `=` or `:` ends the key); keys are
 *   case-insensitive; a key twice in one section is an error; a line that is neither is an error;
 * - a line whose first non-blank character is `#` or `;` is a comment; anywhere else those
 *   characters are part of the value (no inline comments);
 * - a line indented deeper than its key continues the value; blank lines inside a value are kept
 *   and trailing ones dropped;
 * - values are interpolated when read (BasicInterpolation): `%%` is `%`, `%(key)s` is the
 *   value of another key of the section or of [DEFAULT], and any other `%` is an error.
 */

export const DEFAULT_SECTION = 'DEFAULT';

export interface ConfigEntry {
  /** The lines of the value, joined with "\n" when read. */
  lines: string[];
  /** 1-based line of the key. */
  line: number;
}

export interface ConfigSection {
  name: string;
  /** 1-based line of its header. */
  line: number;
  entries: Map<string, ConfigEntry>;
}

export interface ConfigDocument {
  defaults: Map<string, ConfigEntry>;
  /** Every section but [DEFAULT], in file order. */
  sections: ConfigSection[];
}

export interface SyntaxProblem {
  line: number;
  message: string;
}

/** The file breaks configparser's rules; Python would refuse it too. */
export class ConfigSyntaxError extends Error {
  constructor(readonly problems: SyntaxProblem[]) {
    super(problems.map((p) => `line ${p.line}: ${p.message}`).join('; '));
    this.name = 'ConfigSyntaxError';
  }
}

/** A value that cannot be read (a bad `%` interpolation); names its section and key. */
export class ConfigValueError extends Error {
  constructor(
    readonly section: string,
    readonly key: string,
    readonly reason: string,
  ) {
    super(`[${section}] ${key}: ${reason}`);
    this.name = 'ConfigValueError';
  }
}

const COMMENT_PREFIXES = ['#', ';'];
const NO_HEADER = 'text before the first [section] header (the file must start with one, such as [DEFAULT])';
const SECTION = /^\[(.+)\]/;
const OPTION = /^(.*?)\s*([=:])\s*(.*)$/;

/** Python's optionxform: keys are compared in lower case. */
export const keyOf = (name: string) => name.toLowerCase();

export function parseConfig(text: string): ConfigDocument {
  const defaults = new Map<string, ConfigEntry>();
  const sections: ConfigSection[] = [];
  const seen = new Set<string>();
  const problems: SyntaxProblem[] = [];
  let current: Map<string, ConfigEntry> | null = null;
  let currentName = '';
  let entry: ConfigEntry | null = null;
  // Indentation of the line that started the current key; deeper lines continue its value.
  let indent = 0;

  const lines = text.replace(/^\uFEFF/, '').split(/\r\n|\r|\n/);
  lines.forEach((raw, index) => {
    const lineNo = index + 1;
    const stripped = raw.trim();
    const isComment = COMMENT_PREFIXES.some((p) => stripped.startsWith(p));
    const value = isComment ? '' : stripped;
    if (value === '') {
      // A blank line inside a value stays in it; a comment line is skipped.
      if (!isComment && entry !== null) entry.lines.push('');
      return;
    }
    const lineIndent = raw.length - raw.trimStart().length;
    if (current !== null && entry !== null && lineIndent > indent) {
      entry.lines.push(value);
      return;
    }
    indent = lineIndent;
    const header = SECTION.exec(value);
    if (header) {
      // Greedy, as Python's `\[(?P<header>.+)\]`: the name runs to the last `]`.
      const name = header[1];
      entry = null;
      if (name === DEFAULT_SECTION) {
        current = defaults;
      } else if (seen.has(name)) {
        problems.push({ line: lineNo, message: `section [${name}] appears twice (first on line ${sections.find((s) => s.name === name)!.line})` });
        current = null;
      } else {
        seen.add(name);
        const section: ConfigSection = { name, line: lineNo, entries: new Map() };
        sections.push(section);
        current = section.entries;
      }
      currentName = name;
      return;
    }
    if (current === null) {
      // After a refused duplicate header its lines are ignored; the header's problem says why.
      if (currentName === '' && !problems.some((p) => p.message === NO_HEADER)) problems.push({ line: lineNo, message: NO_HEADER });
      return;
    }
    const option = OPTION.exec(value);
    const key = option ? keyOf(option[1].trimEnd()) : '';
    if (!option || key === '') {
      problems.push({ line: lineNo, message: `"${clip(value)}" is neither a [section] header nor a key = value line` });
      entry = null;
      return;
    }
    const earlier = current.get(key);
    if (earlier) {
      problems.push({ line: lineNo, message: `key "${key}" appears twice in [${currentName}] (first on line ${earlier.line})` });
      entry = null;
      return;
    }
    entry = { lines: [option[3].trim()], line: lineNo };
    current.set(key, entry);
  });
  if (problems.length > 0) throw new ConfigSyntaxError(problems);
  return { defaults, sections };
}

const clip = (text: string) => (text.length > 60 ? `${text.slice(0, 60)}…` : text);

/** The keys a section has, its own and those inherited from [DEFAULT]. */
export function sectionKeys(doc: ConfigDocument, section: ConfigSection | null): string[] {
  return [...new Set([...(section?.entries.keys() ?? []), ...doc.defaults.keys()])];
}

/** Line of `key` as `section` sees it (its own, else [DEFAULT]'s), for messages. */
export function lineOf(doc: ConfigDocument, section: ConfigSection | null, key: string): number | undefined {
  return (section?.entries.get(keyOf(key)) ?? doc.defaults.get(keyOf(key)))?.line;
}

const MAX_INTERPOLATION_DEPTH = 10;

/**
 * The value of `key` in `section` (null: [DEFAULT] itself), inherited from [DEFAULT] when the
 * section lacks it, interpolated; undefined when neither has it.
 */
export function readValue(doc: ConfigDocument, section: ConfigSection | null, key: string): string | undefined {
  const sectionName = section?.name ?? DEFAULT_SECTION;
  const raw = (name: string): string | undefined => {
    const entry = section?.entries.get(name) ?? doc.defaults.get(name);
    return entry === undefined ? undefined : entry.lines.join('\n').trimEnd();
  };
  const interpolate = (text: string, depth: number): string => {
    let out = '';
    let rest = text;
    for (;;) {
      const at = rest.indexOf('%');
      if (at < 0) return out + rest;
      out += rest.slice(0, at);
      rest = rest.slice(at);
      if (rest.startsWith('%%')) {
        out += '%';
        rest = rest.slice(2);
        continue;
      }
      const ref = /^%\(([^)]+)\)s/.exec(rest);
      if (!ref) {
        const what = rest.startsWith('%(') ? `bad reference "${clip(rest)}" (write %(name)s)` : `'%' must be followed by '%' or '(' (write %% for a literal %), found "${clip(rest)}"`;
        throw new ConfigValueError(sectionName, key, what);
      }
      const name = keyOf(ref[1]);
      const target = raw(name);
      if (target === undefined) throw new ConfigValueError(sectionName, key, `%(${ref[1]})s refers to a key that [${sectionName}] does not have`);
      if (depth >= MAX_INTERPOLATION_DEPTH) throw new ConfigValueError(sectionName, key, `references nest deeper than ${MAX_INTERPOLATION_DEPTH} (a loop?)`);
      out += interpolate(target, depth + 1);
      rest = rest.slice(ref[0].length);
    }
  };
  const value = raw(keyOf(key));
  return value === undefined ? undefined : interpolate(value, 1);
}
