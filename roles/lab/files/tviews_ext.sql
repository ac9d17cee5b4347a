-- FIXTURE of the pg_tviews "extension contract" (database tviews_ext of the lab).
--
-- The public pg_tviews extension (fraiseql/pg_tviews, Rust/pgrx, PostgreSQL 16+) cannot be
-- built here (the Rust package registry is unreachable and Debian ships PostgreSQL 15), so
-- the lab reproduces its SQL-visible contract in plain SQL/PL/pgSQL. This is a fixture, not
-- the extension:
--   schema tviews, view tviews.registry (schema, name, entity, query, base_tables, logged,
--   options, needs_reregister), tviews.contract_version(), tviews.pg_tviews_health_check()
--   rows (status, component, message, severity), pg_tviews_refresh(name),
--   pg_tviews_refresh_all(), the setting pg_tviews.suspend_triggers (a custom placeholder
--   setting: SET, ALTER ROLE ... SET, ALTER DATABASE ... SET) and pg_tviews_is_suspended().
-- Like the extension it keeps NO error state and NO queue: TVIEWs are tables kept current by
-- triggers on their base tables, which do nothing while triggers are suspended.
--
-- Idempotent: objects are created when missing and seeded only when empty.
\set ON_ERROR_STOP on

SELECT count(*) AS lab_objects_before
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'tviews') \gset

CREATE SCHEMA IF NOT EXISTS tviews;

CREATE TABLE IF NOT EXISTS base_account (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    plan       text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS base_invoice (
    id         bigserial PRIMARY KEY,
    account_id bigint NOT NULL REFERENCES base_account (id),
    amount     numeric(10, 2) NOT NULL,
    paid       boolean NOT NULL DEFAULT false,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Internal storage of the registry (the extension keeps it in its own catalog).
CREATE TABLE IF NOT EXISTS tviews._registry (
    schema           name NOT NULL DEFAULT 'public',
    name             name NOT NULL,
    entity           text NOT NULL,
    query            text NOT NULL,
    base_tables      text[] NOT NULL,
    logged           boolean NOT NULL DEFAULT true,
    options          jsonb NOT NULL DEFAULT '{}',
    needs_reregister boolean NOT NULL DEFAULT false,
    PRIMARY KEY (schema, name)
);

CREATE OR REPLACE VIEW tviews.registry AS
SELECT schema, name, entity, query, base_tables, logged, options, needs_reregister FROM tviews._registry;

CREATE OR REPLACE FUNCTION tviews.contract_version() RETURNS text
LANGUAGE sql IMMUTABLE AS $$ SELECT '1.0'::text $$;

CREATE OR REPLACE FUNCTION pg_tviews_is_suspended() RETURNS boolean
LANGUAGE sql STABLE AS $$
    SELECT COALESCE(NULLIF(current_setting('pg_tviews.suspend_triggers', true), ''), 'off')
           IN ('on', 'true', 'yes', '1')
$$;

CREATE OR REPLACE FUNCTION tviews.pg_tviews_health_check()
RETURNS TABLE (status text, component text, message text, severity text)
LANGUAGE plpgsql STABLE AS $$
DECLARE
    r record;
    total integer;
    missing integer := 0;
    rereg integer;
BEGIN
    SELECT count(*), count(*) FILTER (WHERE g.needs_reregister) INTO total, rereg FROM tviews._registry g;
    FOR r IN SELECT g.schema, g.name FROM tviews._registry g LOOP
        IF to_regclass(format('%I.%I', r.schema, r.name)) IS NULL THEN
            missing := missing + 1;
        END IF;
    END LOOP;
    status := CASE WHEN missing = 0 THEN 'ok' ELSE 'error' END; component := 'registry';
    message := total || ' TVIEWs registered, ' || missing || ' missing their table';
    severity := CASE WHEN missing = 0 THEN 'info' ELSE 'critical' END;
    RETURN NEXT;
    status := CASE WHEN rereg = 0 THEN 'ok' ELSE 'warning' END; component := 'reregister';
    message := rereg || ' TVIEWs need re-registration';
    severity := CASE WHEN rereg = 0 THEN 'info' ELSE 'warning' END;
    RETURN NEXT;
    status := CASE WHEN pg_tviews_is_suspended() THEN 'warning' ELSE 'ok' END; component := 'triggers';
    message := CASE WHEN pg_tviews_is_suspended() THEN 'triggers suspended (pg_tviews.suspend_triggers)'
                    ELSE 'triggers active' END;
    severity := CASE WHEN pg_tviews_is_suspended() THEN 'warning' ELSE 'info' END;
    RETURN NEXT;
END
$$;

CREATE OR REPLACE FUNCTION pg_tviews_refresh(tview text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    r tviews._registry%ROWTYPE;
    n bigint;
BEGIN
    SELECT * INTO r FROM tviews._registry g WHERE g.name = tview OR g.entity = tview LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'TVIEW % is not registered', tview USING ERRCODE = 'undefined_object';
    END IF;
    EXECUTE format('TRUNCATE %I.%I', r.schema, r.name);
    EXECUTE format('INSERT INTO %I.%I %s', r.schema, r.name, r.query);
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$$;

CREATE OR REPLACE FUNCTION pg_tviews_refresh_all() RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    r record;
    n integer := 0;
BEGIN
    FOR r IN SELECT name FROM tviews._registry ORDER BY name LOOP
        PERFORM pg_tviews_refresh(r.name);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$$;

-- Trigger on base tables: refresh the dependent TVIEWs unless suspended.
CREATE OR REPLACE FUNCTION tviews.on_base_change() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    r record;
BEGIN
    IF pg_tviews_is_suspended() THEN
        RETURN NULL;
    END IF;
    FOR r IN SELECT name FROM tviews._registry WHERE TG_TABLE_NAME = ANY(base_tables) LOOP
        PERFORM pg_tviews_refresh(r.name);
    END LOOP;
    RETURN NULL;
END
$$;

SELECT count(*) > 0 AS lab_seeded FROM tviews._registry \gset
\if :lab_seeded
\else
INSERT INTO base_account (name, plan)
SELECT 'account ' || i, (ARRAY['free', 'team', 'enterprise'])[1 + i % 3] FROM generate_series(1, 100) AS i;
INSERT INTO base_invoice (account_id, amount, paid)
SELECT 1 + i % 100, (i % 500) + 0.5, i % 4 <> 0 FROM generate_series(1, 1000) AS i;

DO $$
DECLARE
    defs text[][] := ARRAY[
        ['tv_account', 'account', 'SELECT id, name, plan FROM base_account', '{base_account}'],
        ['tv_account_free', 'account_free', 'SELECT id, name FROM base_account WHERE plan = ''free''', '{base_account}'],
        ['tv_account_team', 'account_team', 'SELECT id, name FROM base_account WHERE plan = ''team''', '{base_account}'],
        ['tv_account_enterprise', 'account_enterprise', 'SELECT id, name FROM base_account WHERE plan = ''enterprise''', '{base_account}'],
        ['tv_invoice', 'invoice', 'SELECT id, account_id, amount, paid FROM base_invoice', '{base_invoice}'],
        ['tv_invoice_unpaid', 'invoice_unpaid', 'SELECT id, account_id, amount FROM base_invoice WHERE NOT paid', '{base_invoice}'],
        ['tv_account_balance', 'account_balance', 'SELECT account_id, sum(amount) FILTER (WHERE NOT paid) AS due FROM base_invoice GROUP BY account_id', '{base_invoice}'],
        ['tv_plan_revenue', 'plan_revenue', 'SELECT a.plan, sum(i.amount) AS revenue FROM base_invoice i JOIN base_account a ON a.id = i.account_id GROUP BY a.plan', '{base_account,base_invoice}']
    ];
    i integer;
BEGIN
    FOR i IN 1 .. array_length(defs, 1) LOOP
        EXECUTE format('CREATE TABLE IF NOT EXISTS %I AS %s WITH NO DATA', defs[i][1], defs[i][3]);
        INSERT INTO tviews._registry (name, entity, query, base_tables)
        VALUES (defs[i][1], defs[i][2], defs[i][3], defs[i][4]::text[]);
    END LOOP;
END
$$;
SELECT pg_tviews_refresh_all();
\echo LAB_CHANGED: seeded the extension contract fixture (8 TVIEWs)
\endif

DROP TRIGGER IF EXISTS tviews_sync ON base_account;
CREATE TRIGGER tviews_sync AFTER INSERT OR UPDATE OR DELETE ON base_account
    FOR EACH STATEMENT EXECUTE FUNCTION tviews.on_base_change();
DROP TRIGGER IF EXISTS tviews_sync ON base_invoice;
CREATE TRIGGER tviews_sync AFTER INSERT OR UPDATE OR DELETE ON base_invoice
    FOR EACH STATEMENT EXECUTE FUNCTION tviews.on_base_change();

GRANT USAGE ON SCHEMA tviews TO :"monitor_user", :"app_user";
GRANT SELECT ON ALL TABLES IN SCHEMA public, tviews TO :"monitor_user";
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE ON ALL TABLES IN SCHEMA public TO :"app_user";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO :"app_user";
GRANT SELECT ON ALL TABLES IN SCHEMA tviews TO :"app_user";

SELECT count(*) AS lab_objects_after
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname IN ('public', 'tviews') \gset
SELECT 'LAB_CHANGED: created extension contract objects' WHERE :lab_objects_after <> :lab_objects_before;
