import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { BODY_READ_LIMIT_BYTES, BodyHead } from './http-outcome.js';

/** Told once when a try is over: `error` is null for a complete answer (or one cut off past the read limit). */
export interface TryOwner {
  tryEnded(handler: TryHandler, error: Error | null): void;
  /** The request is about to go onto a socket (the transport's probe learns which). */
  tryWriting(handler: TryHandler): void;
}

class BodyCutOff extends Error {
  constructor() {
    super('the rest of the body was not read');
    this.name = 'BodyCutOff';
  }
}

/**
 * One try of an attempt, as undici's dispatch handler: keeps the status, the headers and the
 * head of the body, and tells its owner once when it is over. A try cancelled from outside
 * (its deadline passed) ignores whatever undici reports after that.
 */
export class TryHandler implements Dispatcher.DispatchHandler {
  /** Whether the socket had carried a request before; set by the transport's probe. */
  reusedSocket = false;
  /** Whether any byte of an answer came, even one that never became complete headers. */
  responseStarted = false;
  statusCode: number | null = null;
  /** Set with `statusCode`. */
  headers: IncomingHttpHeaders | null = null;
  head: BodyHead | null = null;
  private controller: Dispatcher.DispatchController | null = null;
  private cancelled: Error | null = null;
  private received = 0;
  private over = false;

  constructor(private readonly owner: TryOwner) {}

  onRequestStart(controller: Dispatcher.DispatchController): void {
    // A try whose deadline passed while it waited for a connection is never written.
    if (this.cancelled !== null) {
      controller.abort(this.cancelled);
      return;
    }
    this.controller = controller;
    this.owner.tryWriting(this);
  }

  // Deprecated in undici's types, still called, and the only word of a first byte before complete headers.
  onResponseStarted(): void {
    this.responseStarted = true;
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    // 1xx answers are informational: the real one follows on the same request.
    if (this.over || statusCode < 200) return;
    this.statusCode = statusCode;
    this.headers = headers;
    this.head = new BodyHead();
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.over) return;
    this.head!.add(chunk);
    this.received += chunk.length;
    if (this.received > BODY_READ_LIMIT_BYTES) {
      this.end(null);
      // Aborting closes the socket. Not from inside this callback: undici's parser may still
      // finish the message from the bytes it holds, and an aborted request must not complete.
      queueMicrotask(() => controller.abort(new BodyCutOff()));
    }
  }

  onResponseEnd(): void {
    this.end(null);
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    this.end(error);
  }

  /** Ends the try without telling the owner; one still waiting for a connection is aborted when it gets one. */
  cancel(reason: Error): void {
    this.over = true;
    this.cancelled = reason;
    this.controller?.abort(reason);
  }

  private end(error: Error | null): void {
    if (this.over) return;
    this.over = true;
    this.owner.tryEnded(this, error);
  }
}
