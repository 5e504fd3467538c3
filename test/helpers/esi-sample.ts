/** The `[DEFAULT]` broker keys of an esi-event-actions configuration. */
export interface EsiBroker {
  user: string;
  password: string;
  host: string;
  port: string;
  queues: string;
}

const DOCS_BROKER: EsiBroker = {
  user: '<user in transport_url>',
  password: '<password in transport_url>',
  host: '<host in transport_url>',
  port: '<port in transport_url>',
  queues: 'esi_leap_versioned_notifications.info,esi_leap_versioned_notifications.error',
};

/**
 * The sample configuration from the esi-leap docs (INTEROP.md), stray `}` of `[delete]`
 * included, with its `[DEFAULT]` broker as published or pointed elsewhere.
 */
export function esiSampleConfig(broker: Partial<EsiBroker> = {}): string {
  const b = { ...DOCS_BROKER, ...broker };
  return `[DEFAULT]
user = ${b.user}
password = ${b.password}
host = ${b.host}
port = ${b.port}
queues = ${b.queues}

[fulfill]
events = esi_leap.lease.fulfill.end
script = fulfill.sh
script_params = node_name,fulfill_time
filter_params = {"purpose": "test", "properties.vendor": "dell"}

[delete]
events = esi_leap.lease.delete.end
script = delete.sh
script_params = node_name,expire_time
filter_params = {"purpose": "test", "properties.vendor": "dell"}}
`;
}

/** The docs' sample exactly as published. */
export const ESI_DOCS_SAMPLE = esiSampleConfig();
