/*
 * A std.http URL may carry credentials (`https://user:password@host/`). What the engine says
 * about a call — state_info, the events that carry it, logs — shows the URL without them.
 */

const MASK = '***';

/**
 * The URL with its password masked (`http://user:***@host/path`); a user name with no password
 * is masked itself, since it is then usually a token. Anything that is not a URL with
 * credentials comes back as it was, but for credentials `redactCredentials` still finds.
 */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return redactCredentials(url);
  }
  if (parsed.username === '' && parsed.password === '') return url;
  if (parsed.password !== '') parsed.password = MASK;
  else parsed.username = MASK;
  return parsed.href;
}

// scheme://userinfo@ — the authority ends at the first / ? # \ or space; its last @ ends the userinfo.
const USERINFO = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s/?#\\]*)@/gi;
const isMasked = (userinfo: string) => userinfo === MASK || userinfo.endsWith(`:${MASK}`);

/**
 * `text` (an error message, say) with `url` shown redacted wherever it appears as written or as
 * parsed, and the user info of any other URL in it masked.
 */
export function redactCredentials(text: string, url?: string): string {
  let out = text;
  if (url) {
    const safe = redactUrl(url);
    if (safe !== url) {
      out = out.split(url).join(safe);
      try {
        const { href } = new URL(url);
        out = out.split(href).join(safe);
      } catch {
        /* not a URL: only its text form was replaced */
      }
    }
  }
  return out.replace(USERINFO, (match, scheme: string, userinfo: string) => (isMasked(userinfo) ? match : `${scheme}${MASK}@`));
}
