#!/usr/bin/env node
// A tiny webhook receiver: prints each delivery and checks its Standard Webhooks signature.
//   WEBHOOK_SECRET=whsec_... node examples/receiver.mjs [port]
import http from 'node:http';
import { Webhook } from 'standardwebhooks';

const port = Number(process.argv[2] ?? process.env.PORT ?? 9000);
const secret = process.env.WEBHOOK_SECRET;
if (!secret) {
  console.error('set WEBHOOK_SECRET to the listener secret (whsec_...) printed by listener-add');
  process.exit(2);
}
const webhook = new Webhook(secret);
const seen = new Set();

http
  .createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString('utf8');
      let verified = 'valid signature';
      try {
        webhook.verify(body, req.headers);
      } catch (err) {
        verified = `BAD SIGNATURE (${err.message})`;
      }
      const id = req.headers['webhook-id'];
      // At least once: the same webhook-id may arrive again after a crash; count it once.
      const repeat = seen.has(id) ? ' (repeat)' : '';
      seen.add(id);
      let summary = body;
      try {
        const e = JSON.parse(body);
        summary = `${e.type} seq=${e.sequence ?? '-'} execution=${e.execution_id ?? '-'} task=${e.task_name ?? '-'} state=${e.state ?? '-'}`;
      } catch {}
      console.log(`${new Date().toISOString()} ${id}${repeat} attempt=${req.headers['webhook-attempt']} ${verified}: ${summary}`);
      res.writeHead(verified === 'valid signature' ? 204 : 400).end();
    });
  })
  .listen(port, '127.0.0.1', () => console.log(`receiver listening on http://127.0.0.1:${port}/`));
