/** Request body limit of every route but event ingest. */
export const BODY_LIMIT = '1mb';
