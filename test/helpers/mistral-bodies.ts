// What a real Mistral's webhook notifier posts (INTEROP.md).

/** The task body a real Mistral 15.0.0 posted, byte for byte as its notifier sends it. */
export const MISTRAL_TASK_BODY =
  '{"id": "6954…", "name": "first", "workflow_execution_id": "26a6…", "workflow_name": "hello", ' +
  '"workflow_namespace": "", "workflow_id": "460b…", "state": "SUCCESS", "state_info": null, ' +
  '"type": "ACTION", "project_id": "<default-project>", "created_at": "2026-11-23 01:43:39", ' +
  '"updated_at": "2026-11-23 01:43:39", "started_at": "2026-11-23 01:43:39", ' +
  '"finished_at": "2026-11-23 01:43:39", "event": "TASK_SUCCEEDED"}';

/** A workflow body with every key of Mistral's workflow notification. */
export const MISTRAL_WORKFLOW_FIELDS = {
  id: 'c0ffee00-0000-4000-8000-000000000001',
  name: 'hello',
  workflow_name: 'hello',
  workflow_namespace: '',
  workflow_id: '460b0000-0000-4000-8000-000000000002',
  state: 'ERROR',
  state_info: 'Failure caused by error in tasks: first',
  project_id: '<default-project>',
  task_execution_id: null,
  root_execution_id: null,
  created_at: '2026-11-23 01:43:38',
  updated_at: '2026-11-23 01:43:41',
  event: 'WORKFLOW_FAILED',
};
