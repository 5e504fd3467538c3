/** A mistake in how the CLI was called (exit code 2). */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface ProblemDetails {
  type?: string;
  title?: string;
  status?: number;
  detail?: string;
  errors?: Array<{ field: string; message: string; line?: number }>;
}

/** The relay answered with a non-2xx status (exit code 1). */
export class ApiError extends Error {
  override name = 'ApiError';
  constructor(
    readonly status: number,
    readonly problem: ProblemDetails,
    readonly hint?: string,
  ) {
    super(`${status} ${problem.title ?? 'error'}${problem.detail ? `: ${problem.detail}` : ''}`);
  }
}

/** The relay could not be reached or did not answer (exit code 1). */
export class UnreachableError extends Error {
  override name = 'UnreachableError';
  constructor(
    readonly url: string,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The request went through but what it was for did not happen, e.g. a ping the receiver refused (exit code 1). */
export class CommandFailedError extends Error {
  override name = 'CommandFailedError';
  constructor(
    message: string,
    readonly hint?: string,
  ) {
    super(message);
  }
}
