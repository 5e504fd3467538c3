-- The per-minute rollups summed by the hour, added to in the same transactions: a listener's
-- day is 24 rows here against up to 1,440 there. Health (the last 24 hours) reads the whole
-- hours of its window here and the minutes of its first, partial hour there; a series whose
-- buckets are whole hours reads only these.
CREATE TABLE listener_rollups_hourly (
  listener_id TEXT NOT NULL,
  project TEXT NOT NULL,
  hour INTEGER NOT NULL,              -- unix ms, a whole hour
  succeeded INTEGER NOT NULL DEFAULT 0,
  failed INTEGER NOT NULL DEFAULT 0,
  retried INTEGER NOT NULL DEFAULT 0,
  latency_0 INTEGER NOT NULL DEFAULT 0,
  latency_1 INTEGER NOT NULL DEFAULT 0,
  latency_2 INTEGER NOT NULL DEFAULT 0,
  latency_3 INTEGER NOT NULL DEFAULT 0,
  latency_4 INTEGER NOT NULL DEFAULT 0,
  latency_5 INTEGER NOT NULL DEFAULT 0,
  latency_6 INTEGER NOT NULL DEFAULT 0,
  latency_7 INTEGER NOT NULL DEFAULT 0,
  latency_8 INTEGER NOT NULL DEFAULT 0,
  latency_9 INTEGER NOT NULL DEFAULT 0,
  latency_10 INTEGER NOT NULL DEFAULT 0,
  latency_11 INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (listener_id, hour)
) STRICT, WITHOUT ROWID;
CREATE INDEX listener_rollups_hourly_project_hour ON listener_rollups_hourly (project, hour);
CREATE INDEX listener_rollups_hourly_hour ON listener_rollups_hourly (hour);

-- The hours of the minutes kept so far.
INSERT INTO listener_rollups_hourly (listener_id, project, hour, succeeded, failed, retried,
    latency_0, latency_1, latency_2, latency_3, latency_4, latency_5, latency_6, latency_7, latency_8, latency_9, latency_10, latency_11)
  SELECT listener_id, project, minute - minute % 3600000, sum(succeeded), sum(failed), sum(retried),
    sum(latency_0), sum(latency_1), sum(latency_2), sum(latency_3), sum(latency_4), sum(latency_5), sum(latency_6),
    sum(latency_7), sum(latency_8), sum(latency_9), sum(latency_10), sum(latency_11)
  FROM listener_rollups GROUP BY listener_id, project, minute - minute % 3600000;
