/*
 * AMQP broker URLs (amqp:, amqps:): taken apart for connecting and the network guard, and
 * shown with the password masked wherever they are read, logged or recorded.
 */

export const AMQP_MASK = '***';

export const AMQP_DEFAULT_PORTS: Record<string, number> = { 'amqp:': 5672, 'amqps:': 5671 };

/** The broker URL with its password shown as `***` (`amqp://user:***@host/vhost`); never throws. */
export function maskAmqpUrl(url: string): string {
  if (URL.canParse(url)) {
    const parsed = new URL(url);
    if (parsed.password === '') return url;
    parsed.password = AMQP_MASK;
    return parsed.href;
  }
  // Not a URL at all: still never let what looks like `user:password@` through.
  return url.replace(/\/\/([^/@:]*):[^/]*@/, `//$1:${AMQP_MASK}@`);
}

/** Where the transport connects: the broker URL taken apart, the host as the network guard sees it. */
export interface BrokerAddress {
  protocol: 'amqp' | 'amqps';
  /** Normalised as an http URL would be (`0x7f.1` → `127.0.0.1`), without IPv6 brackets. */
  hostname: string;
  port: number;
  /** undefined when the URL has no credentials (the broker default guest/guest applies). */
  username?: string;
  password?: string;
  /** The vhost as written in the URL path, still percent-encoded; '' means `/`. */
  vhost: string;
  heartbeat?: number;
  frameMax?: number;
  channelMax?: number;
  /** `http://<host>:<port>/`: what the network guard's URL checks take. */
  guardUrl: string;
}

function intParam(params: URLSearchParams, name: string): number | undefined {
  const value = params.get(name);
  return value !== null && /^\d+$/.test(value) ? Number(value) : undefined;
}

/** Throws a TypeError for anything but an amqp or amqps URL with a host. */
export function parseBrokerUrl(url: string): BrokerAddress {
  const parsed = new URL(url);
  const defaultPort = AMQP_DEFAULT_PORTS[parsed.protocol];
  if (defaultPort === undefined) throw new TypeError(`not an amqp or amqps URL: ${parsed.protocol}`);
  if (parsed.hostname === '') throw new TypeError('the URL names no broker host');
  const port = parsed.port === '' ? defaultPort : Number(parsed.port);
  // amqp: is not a special scheme, so its host stays opaque text; an http URL parses it as a browser would.
  const httpText = `http://${parsed.hostname}:${port}/`;
  if (!URL.canParse(httpText)) throw new TypeError(`${parsed.hostname} is not a valid host name`);
  const asHttp = new URL(httpText);
  const hostname = asHttp.hostname.replace(/^\[(.*)\]$/, '$1');
  const hasCredentials = parsed.username !== '' || parsed.password !== '';
  const decode = (text: string) => {
    try {
      return decodeURIComponent(text);
    } catch {
      throw new TypeError('the user name or password has a malformed %-escape');
    }
  };
  return {
    protocol: parsed.protocol === 'amqps:' ? 'amqps' : 'amqp',
    hostname,
    port,
    username: hasCredentials ? decode(parsed.username) : undefined,
    password: hasCredentials ? decode(parsed.password) : undefined,
    vhost: parsed.pathname.replace(/^\//, ''),
    heartbeat: intParam(parsed.searchParams, 'heartbeat'),
    frameMax: intParam(parsed.searchParams, 'frameMax'),
    channelMax: intParam(parsed.searchParams, 'channelMax'),
    guardUrl: asHttp.toString(),
  };
}
