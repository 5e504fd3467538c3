import { Router } from 'express';
import { isRefusal, type Engine } from '../../engine/engine.js';
import { TaskStateInput, toTaskView } from '../../records/engine.js';
import type { EngineStore } from '../../store/engine-store.js';
import { bodyOrEmpty } from '../json-body.js';
import { conflict, notFound, validationProblem } from '../problem.js';

export function taskRoutes({ store, engine }: { store: EngineStore; engine: Engine }): Router {
  const router = Router();

  router.get('/:id', async (req, res) => {
    const task = await store.getTask(res.locals.project, req.params.id);
    if (!task) throw notFound(`task ${req.params.id}`);
    res.json(toTaskView(task));
  });

  // {"state": "RUNNING"} re-runs a failed task; the tasks that succeeded before it are not run again.
  router.put('/:id', async (req, res) => {
    const parsed = TaskStateInput.safeParse(bodyOrEmpty(req));
    if (!parsed.success) throw validationProblem(parsed.error);
    const outcome = await engine.rerunTask(res.locals.project, req.params.id);
    if (isRefusal(outcome)) throw outcome.refused === 404 ? notFound(outcome.detail) : conflict(outcome.detail);
    res.json(toTaskView(outcome));
  });

  return router;
}
