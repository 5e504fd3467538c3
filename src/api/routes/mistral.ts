import express, { Router } from 'express';
import type { Ingest } from '../../ingest/ingest.js';
import { MISTRAL_SOURCE, MistralBodyError, parseMistralNotification } from '../../ingest/mistral.js';
import { invalidField } from '../problem.js';
import { BODY_LIMIT } from '../limits.js';
import { onlyKnownParams } from '../paging.js';

/**
 * What a real Mistral's webhook notifier posts: no Content-Type, posted once, never retried.
 * Mistral counts only 200 and 201 as success, so a stored (or duplicate) notification is a 200.
 */
export function mistralRoutes({ ingest }: { ingest: Ingest }): Router {
  const router = Router();
  router.post('/', express.raw({ type: () => true, limit: BODY_LIMIT }), async (req, res) => {
    // A mistyped parameter (`workbok`) would store every notification without its workbook.
    onlyKnownParams(req.query, ['workbook']);
    const workbook = req.query.workbook;
    if (workbook !== undefined && (typeof workbook !== 'string' || workbook === '')) {
      throw invalidField('workbook', 'give one workbook name');
    }
    const raw: Buffer = Buffer.isBuffer(req.body) ? req.body : Buffer.alloc(0);
    let parsed;
    try {
      parsed = parseMistralNotification(raw, { workbook: workbook ?? null });
    } catch (err) {
      if (err instanceof MistralBodyError) throw invalidField(err.field, err.message.replace(/^[^:]*: /, ''));
      throw err;
    }
    if (parsed.kind === 'ignored') {
      res.status(200).json({ stored: false, reason: parsed.reason });
      return;
    }
    // Metered as POST /v1/events is: a project's own filters cannot hold the relay (a 422 then).
    const [result] = await ingest.ingest(res.locals.project, [{ input: parsed.event, original: { format: 'mistral', body: parsed.originalBody } }], MISTRAL_SOURCE);
    res.status(200).json({ stored: true, id: result.id, duplicate: result.duplicate });
  });
  return router;
}
