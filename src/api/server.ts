import http from 'node:http';
import type { Express } from 'express';

/**
 * Copies the properties of `from` and of its prototypes, up to (not including) `base`, onto
 * `to`; the nearest definition of a name wins, as it would on the prototype chain.
 */
function adopt(from: object, to: object, base: object): void {
  for (let o: object | null = from; o !== null && o !== base; o = Object.getPrototypeOf(o) as object | null) {
    for (const [key, descriptor] of Object.entries(Object.getOwnPropertyDescriptors(o))) {
      if (!Object.prototype.hasOwnProperty.call(to, key)) Object.defineProperty(to, key, descriptor);
    }
  }
}

/**
 * The HTTP server for an express app, whose requests and responses are express's from the
 * moment they are made. express gives each request and response its own prototypes as they
 * enter the app (Object.setPrototypeOf); an object whose prototype changes after it was made
 * loses V8's fast paths in Node's HTTP and stream code, which it then runs through for the
 * rest of the request. Here Node makes them from classes that already carry express's
 * properties, and the app is given those classes' prototypes as its own, so express's
 * setPrototypeOf finds the prototype already in place and changes nothing.
 */
export function createHttpServer(app: Express): http.Server {
  class Request extends http.IncomingMessage {}
  class Response extends http.ServerResponse<Request> {}
  adopt(app.request, Request.prototype, http.IncomingMessage.prototype);
  adopt(app.response, Response.prototype, http.ServerResponse.prototype);
  app.request = Request.prototype as unknown as Express['request'];
  app.response = Response.prototype as unknown as Express['response'];
  return http.createServer({ IncomingMessage: Request, ServerResponse: Response }, app);
}
