-- Schema and seed data of the task scheduler database of the lab
-- (runbook: task-scheduler-incident-response.md).
--
-- Idempotent: tables are created when missing and seeded only when empty.
-- Run with psql as a superuser, connected to the scheduler database:
--   psql -X -q -At -v ON_ERROR_STOP=1 -v app_user=app -v monitor_user=monitoring -f scheduler_schema.sql
-- The objects are owned by :app_user. Prints LAB_CHANGED lines when it changed something.
\set ON_ERROR_STOP on
SET ROLE :"app_user";

SELECT count(*) AS lab_objects_before
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' \gset

CREATE TABLE IF NOT EXISTS task (
    id          bigserial PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    schedule    text NOT NULL,
    enabled     boolean NOT NULL DEFAULT true,
    status      text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'disabled')),
    payload     jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS task_run (
    id          bigserial PRIMARY KEY,
    task_id     bigint NOT NULL REFERENCES task (id) ON DELETE CASCADE,
    worker_id   text,
    status      text NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'succeeded', 'failed')),
    success     boolean,
    started_at  timestamptz NOT NULL DEFAULT now(),
    finished_at timestamptz,
    error       text
);
CREATE INDEX IF NOT EXISTS task_run_task_id_started_at_idx ON task_run (task_id, started_at DESC);
CREATE INDEX IF NOT EXISTS task_run_started_at_idx ON task_run (started_at);

-- run_at/locked_until as in the runbook's queue queries; due_at/claimed_* for the claim view.
CREATE TABLE IF NOT EXISTS due_work (
    id           bigserial PRIMARY KEY,
    task_id      bigint NOT NULL REFERENCES task (id) ON DELETE CASCADE,
    run_at       timestamptz NOT NULL,
    due_at       timestamptz GENERATED ALWAYS AS (run_at) STORED,
    locked_until timestamptz,
    claimed_by   text,
    claimed_at   timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS due_work_run_at_idx ON due_work (run_at);
CREATE INDEX IF NOT EXISTS due_work_created_at_idx ON due_work (created_at);

CREATE TABLE IF NOT EXISTS worker_heartbeat (
    worker_id       text PRIMARY KEY,
    hostname        text NOT NULL,
    status          text NOT NULL DEFAULT 'running',
    processed_count bigint NOT NULL DEFAULT 0,
    started_at      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS audit_log (
    id      bigserial PRIMARY KEY,
    at      timestamptz NOT NULL DEFAULT now(),
    actor   text NOT NULL,
    action  text NOT NULL,
    detail  text NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON audit_log (at DESC);

SELECT NOT EXISTS (SELECT 1 FROM task) AS lab_seed \gset
\if :lab_seed
BEGIN;

INSERT INTO task (name, schedule, enabled, status, payload, created_at, updated_at)
SELECT format('task-%s', lpad(g::text, 3, '0')),
       (ARRAY['*/1 * * * *', '*/5 * * * *', '*/15 * * * *', '0 * * * *', '0 3 * * *'])[1 + g % 5],
       g % 12 <> 0,
       CASE WHEN g % 12 = 0 THEN 'paused' WHEN g % 29 = 0 THEN 'disabled' ELSE 'active' END,
       jsonb_build_object('queue', (ARRAY['default', 'reports', 'billing', 'email'])[1 + g % 4],
                          'timeout_seconds', 30 * (1 + g % 6)),
       now() - make_interval(days => 60 - g % 60),
       now() - make_interval(days => g % 7)
FROM generate_series(1, 60) AS g;

INSERT INTO worker_heartbeat (worker_id, hostname, status, processed_count, started_at, last_seen)
SELECT format('worker-%s', g),
       format('worker-%s.lab', g),
       CASE WHEN g = 4 THEN 'stopped' ELSE 'running' END,
       1000 * g + 17 * g * g,
       now() - make_interval(hours => 24 + g),
       CASE WHEN g = 4 THEN now() - interval '3 hours' ELSE now() - make_interval(secs => 5 * g) END
FROM generate_series(1, 4) AS g;

INSERT INTO task_run (task_id, worker_id, status, success, started_at, finished_at, error)
SELECT 1 + g % 60,
       format('worker-%s', 1 + g % 3),
       CASE WHEN g <= 3 THEN 'running' WHEN g % 23 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN g <= 3 THEN NULL ELSE g % 23 <> 0 END,
       now() - make_interval(mins => g),
       CASE WHEN g <= 3 THEN NULL ELSE now() - make_interval(mins => g) + make_interval(secs => 2 + g % 90) END,
       CASE WHEN g > 3 AND g % 23 = 0 THEN 'TimeoutError: task exceeded its timeout' END
FROM generate_series(1, 1440) AS g;

INSERT INTO due_work (task_id, run_at, locked_until, claimed_by, claimed_at, attempts, created_at)
SELECT 1 + g % 60,
       now() + make_interval(mins => g - 40),
       CASE WHEN g % 10 = 0 AND g <= 40 THEN now() + interval '2 minutes' END,
       CASE WHEN g % 10 = 0 AND g <= 40 THEN format('worker-%s', 1 + g % 3) END,
       CASE WHEN g % 10 = 0 AND g <= 40 THEN now() - interval '1 minute' END,
       CASE WHEN g <= 40 THEN g % 3 ELSE 0 END,
       now() - make_interval(mins => 60 - g % 60)
FROM generate_series(1, 240) AS g;

INSERT INTO audit_log (at, actor, action, detail)
SELECT now() - make_interval(mins => 7 * g),
       (ARRAY['scheduler', 'api', 'admin@example.com', 'worker-1', 'worker-2'])[1 + g % 5],
       (ARRAY['task.created', 'task.updated', 'task.paused', 'login', 'work.claimed', 'work.completed'])[1 + g % 6],
       jsonb_build_object('task_id', 1 + g % 60, 'request_id', md5(g::text))::text
FROM generate_series(1, 200) AS g;

COMMIT;
\echo LAB_CHANGED: seeded the task scheduler tables
\endif

SELECT count(*) AS lab_objects_after
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' \gset
SELECT 'LAB_CHANGED: created schema objects' WHERE :lab_objects_after <> :lab_objects_before;

-- Read access for the monitoring role (exporter custom queries).
GRANT USAGE ON SCHEMA public TO :"monitor_user";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"monitor_user";
RESET ROLE;
