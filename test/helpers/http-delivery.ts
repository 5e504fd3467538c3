import { renderPayload, type PayloadRenderInput } from '../../src/dispatch/formats.js';
import { appendQuery } from '../../src/transports/http-query.js';

export type HttpDeliveryInput = Omit<PayloadRenderInput, 'transport' | 'bodyless' | 'deliveryId'> & {
  method: string;
  url: string;
  /** The envelope's id unless given. */
  deliveryId?: string;
};

/**
 * An HTTP delivery as the dispatcher renders it (renderPayload, with no body for GET and DELETE)
 * and the http transport sends it: to the callback URL with the payload's query appended.
 */
export function httpDelivery({ method, url, ...input }: HttpDeliveryInput): { url: string; body: string; headers: Record<string, string> } {
  const sent = method.toUpperCase();
  const payload = renderPayload({ deliveryId: input.envelope.id, ...input, transport: 'http', bodyless: sent === 'GET' || sent === 'DELETE' });
  return { url: payload.query ? appendQuery(url, payload.query) : url, body: payload.body, headers: payload.headers };
}
