-- Envelope additions and pluggable transports.
-- An event keeps the message it was made from with its format (a Mistral notifier body or an
-- oslo.messaging notification), so each payload format forwards only an original of its kind.
ALTER TABLE events ADD COLUMN original_format TEXT CHECK (original_format IN ('mistral', 'oslo'));
UPDATE events SET original_format = 'mistral' WHERE original_body IS NOT NULL;

-- A process claims only deliveries of the transports it has enabled; the claim reads the
-- listener's transport from its spec through this column.
ALTER TABLE listeners ADD COLUMN transport TEXT
  GENERATED ALWAYS AS (coalesce(json_extract(spec, '$.callback.transport'), 'http')) VIRTUAL;
