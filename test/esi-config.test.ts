import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { ConfigSyntaxError, ConfigValueError, parseConfig, readValue, sectionKeys, type ConfigDocument } from '../src/cli/esi-config.js';
import { ESI_DOCS_SAMPLE } from './helpers/esi-sample.js';

/*
 * The configparser rules esi-event-actions' files are written for: each rule on its own, then
 * every sample read by the real Python configparser and by ours, which must agree.
 */

/** Every section's keys (own and inherited) with their values, as Python's `dict(config[s])` shows them. */
function view(doc: ConfigDocument): Record<string, Record<string, string>> {
  const out: Record<string, Record<string, string>> = {};
  for (const s of doc.sections) {
    out[s.name] = Object.fromEntries(sectionKeys(doc, s).map((k) => [k, readValue(doc, s, k)!]));
  }
  return out;
}

const read = (text: string) => view(parseConfig(text));

function syntaxProblems(text: string): Array<{ line: number; message: string }> {
  try {
    parseConfig(text);
  } catch (err) {
    if (err instanceof ConfigSyntaxError) return err.problems;
    throw err;
  }
  throw new Error('expected a syntax error');
}

describe('sections and keys', () => {
  it('reads key = value and key: value, keys in lower case, values trimmed', () => {
    expect(read('[a]\nEvents = x.y\nScript:run.sh\nSpaced   =   v  w  \n')).toEqual({ a: { events: 'x.y', script: 'run.sh', spaced: 'v  w' } });
  });

  it('ends a key at the first = or :', () => {
    expect(read('[a]\nx:y = z\nurl = amqp://h:1/\nf = {"a": "b"}\n')).toEqual({ a: { x: 'y = z', url: 'amqp://h:1/', f: '{"a": "b"}' } });
  });

  it('takes an empty value', () => {
    expect(read('[a]\nk =\nj:\n')).toEqual({ a: { k: '', j: '' } });
  });

  it('names a section by everything up to the last ] and ignores the rest of the line', () => {
    expect(read('[t]junk\nx = 1\n[a]b]\ny = 2\n')).toEqual({ t: { x: '1' }, 'a]b': { y: '2' } });
  });

  it('keeps section names as written (case matters)', () => {
    expect(read('[Fulfill]\nx = 1\n[fulfill]\nx = 2\n')).toEqual({ Fulfill: { x: '1' }, fulfill: { x: '2' } });
  });

  it('keeps sections in file order, [DEFAULT] apart', () => {
    const doc = parseConfig('[DEFAULT]\nu = 1\n[b]\n[a]\n');
    expect(doc.sections.map((s) => s.name)).toEqual(['b', 'a']);
    expect([...doc.defaults.keys()]).toEqual(['u']);
  });

  it('reads \\r\\n line ends and a byte-order mark', () => {
    expect(read('\uFEFF[a]\r\nk = v\r\n  w\r\n')).toEqual({ a: { k: 'v\nw' } });
  });
});

describe('[DEFAULT]', () => {
  it('is inherited by every section, which may override a key', () => {
    expect(read('[DEFAULT]\nuser = u\nport = 1\n[a]\nport = 2\n[b]\n')).toEqual({ a: { port: '2', user: 'u' }, b: { user: 'u', port: '1' } });
  });

  it('may appear twice, its keys merged', () => {
    expect(read('[DEFAULT]\nu = 1\n[a]\n[DEFAULT]\nv = 2\n')).toEqual({ a: { u: '1', v: '2' } });
  });

  it('is read with readValue(doc, null, key)', () => {
    const doc = parseConfig('[DEFAULT]\nhost = h\n[a]\nhost = other\n');
    expect(readValue(doc, null, 'HOST')).toBe('h');
    expect(readValue(doc, null, 'missing')).toBeUndefined();
  });
});

describe('comments', () => {
  it('start with # or ; as the first non-blank character of a line', () => {
    expect(read('# top\n; top\n[a]\n  # indented comment\nk = v\n;k2 = no\n')).toEqual({ a: { k: 'v' } });
  });

  it('are not recognised after a value: # and ; stay part of it', () => {
    expect(read('[a]\nscript_params = a,b     # these must be attributes\nf = x ; y\n')).toEqual({
      a: { script_params: 'a,b     # these must be attributes', f: 'x ; y' },
    });
  });

  it('are dropped from inside a continued value', () => {
    expect(read('[a]\nk = one\n  # note\n  two\n')).toEqual({ a: { k: 'one\ntwo' } });
  });
});

describe('values over several lines', () => {
  it('continue on lines indented deeper than the key', () => {
    expect(read('[a]\nfilter_params = {"purpose": "test",\n    "properties.vendor": "dell"}\nnext = 1\n')).toEqual({
      a: { filter_params: '{"purpose": "test",\n"properties.vendor": "dell"}', next: '1' },
    });
  });

  it('keep blank lines inside and drop trailing ones', () => {
    expect(read('[a]\nk = one\n\n  two\n\n\nj = 1\n')).toEqual({ a: { k: 'one\n\ntwo', j: '1' } });
  });

  it('compare against the key\'s own indentation', () => {
    expect(read('[a]\n  k = one\n    two\n  j = 1\n')).toEqual({ a: { k: 'one\ntwo', j: '1' } });
  });

  it('do not follow a section header', () => {
    expect(read('[a]\n  k = 1\n')).toEqual({ a: { k: '1' } });
  });
});

describe('errors naming their line', () => {
  it('a section twice', () => {
    expect(syntaxProblems('[a]\nx = 1\n\n[a]\ny = 2\n')).toEqual([{ line: 4, message: 'section [a] appears twice (first on line 1)' }]);
  });

  it('a key twice in one section, in any case', () => {
    expect(syntaxProblems('[a]\nScript = x\nscript = y\n')).toEqual([{ line: 3, message: 'key "script" appears twice in [a] (first on line 2)' }]);
  });

  it('a line that is neither a key nor a section, and a key without a name', () => {
    expect(syntaxProblems('[a]\nk = 1\njust words\n= value\n')).toEqual([
      { line: 3, message: '"just words" is neither a [section] header nor a key = value line' },
      { line: 4, message: '"= value" is neither a [section] header nor a key = value line' },
    ]);
  });

  it('text before the first section header, once', () => {
    expect(syntaxProblems('user = x\nhost = y\n[a]\n')).toEqual([
      { line: 1, message: 'text before the first [section] header (the file must start with one, such as [DEFAULT])' },
    ]);
  });

  it('says all of them in its message', () => {
    expect(() => parseConfig('[a]\n[a]\nnope\n')).toThrow(/line 2: section \[a\] appears twice.*/);
  });
});

describe('interpolation', () => {
  const doc = parseConfig('[DEFAULT]\nbase = /opt/esi\nhome = %(base)s/home\n[a]\nscript = %(home)s/run.sh\npct = 100%%\nbad = 5%\nref = %(nothing)s\nopen = %(base\nloop = %(loop)s\nUpper = %(BASE)s\n');
  const a = doc.sections[0];

  it('replaces %(key)s from the section or [DEFAULT], recursively, and %% with %', () => {
    expect(readValue(doc, a, 'script')).toBe('/opt/esi/home/run.sh');
    expect(readValue(doc, a, 'pct')).toBe('100%');
    expect(readValue(doc, a, 'upper')).toBe('/opt/esi');
    expect(readValue(doc, null, 'home')).toBe('/opt/esi/home');
  });

  it('refuses a lone %, a missing or unclosed reference and a loop, naming section and key', () => {
    const problem = (key: string) => {
      try {
        readValue(doc, a, key);
      } catch (err) {
        if (err instanceof ConfigValueError) return [err.section, err.key, err.reason];
      }
      return null;
    };
    expect(problem('bad')).toEqual(['a', 'bad', expect.stringMatching(/'%' must be followed by '%' or '\('/)]);
    expect(problem('ref')).toEqual(['a', 'ref', '%(nothing)s refers to a key that [a] does not have']);
    expect(problem('open')).toEqual(['a', 'open', expect.stringMatching(/bad reference/)]);
    expect(problem('loop')).toEqual(['a', 'loop', expect.stringMatching(/deeper than 10/)]);
  });
});

describe('agrees with Python configparser', () => {
  // Run by the real configparser, as esi-event-actions configures it; values read through
  // config[section][key], so interpolation and inheritance apply.
  const PYTHON = `
import configparser, json, sys
text = sys.stdin.read()
c = configparser.ConfigParser()
try:
    c.read_string(text)
except configparser.Error as e:
    print(json.dumps({"error": type(e).__name__}))
    sys.exit(0)
out = {}
for s in c.sections():
    out[s] = {}
    for k in c[s]:
        try:
            out[s][k] = c[s][k]
        except configparser.Error as e:
            out[s][k] = {"error": type(e).__name__}
print(json.dumps({"sections": out}))
`;
  const python = (text: string) => JSON.parse(execFileSync('/usr/bin/python3', ['-c', PYTHON], { input: text, encoding: 'utf8' }));

  function ours(text: string): unknown {
    let doc: ConfigDocument;
    try {
      doc = parseConfig(text);
    } catch (err) {
      if (err instanceof ConfigSyntaxError) return { error: 'syntax' };
      throw err;
    }
    const sections: Record<string, Record<string, unknown>> = {};
    for (const s of doc.sections) {
      sections[s.name] = {};
      for (const k of sectionKeys(doc, s)) {
        try {
          sections[s.name][k] = readValue(doc, s, k);
        } catch (err) {
          if (err instanceof ConfigValueError) sections[s.name][k] = { error: 'interpolation' };
          else throw err;
        }
      }
    }
    return { sections };
  }

  const samples = [
    // The sample in esi-leap's documentation, stray } included.
    ESI_DOCS_SAMPLE,
    // The sample shipped with esi-event-actions, inline comments included.
    '[DEFAULT]\nuser = <rabbit user>\npassword = <rabbit password>\nhost = <rabbit host>\nport = <rabbit port>\nqueues = <queue1>,<queue2>,...\n\n# multiple action sections are allowed\n[action1]\nevents = <event1>,<event2>,...\nscript = <path-to-script>\nscript_params = <param1>,<param2>,...     # these must be attributes on the payload dict\nfilter_params = {"key1": "value1", "key2": "value2"} # the keys are attributes on the payload dict; * notation is valid\n',
    '[a]\nk = one\n\n  two\n  # c\n  three\n\n\nj = 1\n',
    '[a]\n  k = one\n    two\n  j = 1\n',
    '[t]junk\nx:y = z\n[a]b]\ny=2\n',
    '[DEFAULT]\nu = 1\n[a]\n[DEFAULT]\nv = 2\n[b]\nu = 3\n',
    '[DEFAULT]\nbase = /opt\n[a]\np = %(base)s/x\nq = 100%%\nr = 5%\ns = %(none)s\nt = %(BASE)s\n',
    '[a]\nKey = 1\nkey = 2\n',
    '[a]\n[a]\n',
    'k = v\n[a]\n',
    '[a]\nno delimiter here\n',
    '[a]\n;x = 1\n#y = 2\n  ;z = 3\nw = ; not a comment\n',
    '[a]\nk =\nj:\n',
    '[a]\r\nk = v\r\n  w\r\n',
    '[a]\nEvents = x.y\nScript:run.sh\n  Spaced   =   v  w  \n',
  ];

  it.each(samples.map((s, i) => [i, s]))('sample %i', (_i, text) => {
    const expected = python(text);
    const got = ours(text);
    if ('error' in expected) expect(got).toEqual({ error: 'syntax' });
    else {
      const normalized = JSON.parse(JSON.stringify(expected), (_k, v) => (v && typeof v === 'object' && 'error' in v ? { error: 'interpolation' } : v));
      expect(got).toEqual(normalized);
    }
  });
});
