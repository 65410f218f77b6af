#!/usr/bin/env bash
# Shows the plan of the engine's claim query on PostgreSQL with a million finished runs
# (and a thousand due ones) in the table, as the engine runs it: a generic plan of the
# prepared statement (see `lease_pool` in src/engine/mod.rs).
#
#   scripts/claim-plan.sh [postgres://user:pass@host/scratch_db]   # default: nodebase_plan
#
# The database is dropped and re-created (as the postgres OS user, like scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
db=nodebase_plan
url=${1:-postgres://nodebase:nodebase@127.0.0.1:5432/$db}
db=${url##*/}

su postgres -c "dropdb --if-exists $db && createdb -O nodebase $db"
cargo run -q -p migration -- -u "$url" up >/dev/null

psql -q "$url" <<'SQL'
\timing off
-- A million finished runs (one event each), a thousand due.
INSERT INTO event (id, name, data, ts)
SELECT 'e' || g, 'test/plan', '{}', g FROM generate_series(1, 1001000) g;
INSERT INTO run (id, function_id, event_id, status, due_at, claims, attempts, output,
                 created_at, started_at, ended_at, updated_at)
SELECT 'r' || g, 'plan', 'e' || g, 'completed', g, 1, 0, '1', g, g, g + 5, g + 5
FROM generate_series(1, 1000000) g;
INSERT INTO run (id, function_id, event_id, status, due_at, created_at, updated_at)
SELECT 'r' || g, 'plan', 'e' || g, 'queued', g, g, g
FROM generate_series(1000001, 1001000) g;
VACUUM ANALYZE event;
VACUUM ANALYZE run;

SET plan_cache_mode = force_generic_plan;
PREPARE claim(text, text, bigint, int, bigint, bigint, bigint, bigint) AS
WITH "claimed" AS (
  UPDATE "run" SET "status" = $1, "locked_by" = $2, "lease_until" = $3,
    "claims" = "claims" + $4, "started_at" = COALESCE("started_at", $5), "updated_at" = $6
  WHERE (status IN ('queued', 'sleeping')) AND "id" = ANY(ARRAY((
    SELECT "id" FROM "run" WHERE (status IN ('queued', 'sleeping')) AND "due_at" <= $7
    ORDER BY "due_at" ASC LIMIT $8 FOR UPDATE SKIP LOCKED)))
  RETURNING *)
SELECT "claimed".*, "event"."id" AS "ev_id", "event"."name" AS "ev_name",
  "event"."data" AS "ev_data", "event"."user_id" AS "ev_user_id",
  "event"."idempotency_key" AS "ev_idempotency_key", "event"."ts" AS "ev_ts"
FROM "claimed" LEFT JOIN "event" ON "event"."id" = "claimed"."event_id";

SELECT count(*) AS runs, count(*) FILTER (WHERE status = 'queued') AS due FROM run;
EXPLAIN (ANALYZE, BUFFERS, COSTS OFF)
  EXECUTE claim('running', 'plan', 9999999, 1, 2000000, 2000000, 2000000, 64);
SQL

su postgres -c "dropdb $db"
