-- FIXTURE of the pg_tviews "runbook catalog" (database tviews_runbook of the lab).
--
-- The runbooks pg-tviews-incident-checklist.md and pg-tviews-emergency-procedures.md query
-- pg_tviews_metadata, pg_tviews_queue, pg_tviews_health_check() and pg_tviews_refresh(name).
-- The public pg_tviews extension never had these objects and cannot be built here (Rust
-- registry unreachable, Debian ships PostgreSQL 15), so the lab reproduces the contract the
-- runbooks assume with plain SQL and PL/pgSQL. This is a fixture, not the extension.
--
-- Idempotent: objects are created when missing and seeded only when empty.
--   psql -X -q -At -v ON_ERROR_STOP=1 -v app_user=app -v monitor_user=monitoring -f tviews_runbook.sql
-- Prints LAB_CHANGED lines when it changed something.
\set ON_ERROR_STOP on

SELECT count(*) AS lab_objects_before
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' \gset

-- Base tables the TVIEWs read.
CREATE TABLE IF NOT EXISTS base_customer (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    region     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS base_product (
    id         bigserial PRIMARY KEY,
    name       text NOT NULL,
    category   text NOT NULL,
    price      numeric(10, 2) NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS base_order (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES base_customer (id),
    product_id  bigint NOT NULL REFERENCES base_product (id),
    quantity    integer NOT NULL,
    status      text NOT NULL DEFAULT 'open',
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- The catalog the runbooks query.
CREATE TABLE IF NOT EXISTS pg_tviews_metadata (
    entity_name              text PRIMARY KEY,
    definition               text NOT NULL,
    last_error               text,
    last_refreshed           timestamptz,
    last_refresh_duration_ms integer,
    emergency_disabled       boolean NOT NULL DEFAULT false,
    emergency_disable_time   timestamptz,
    emergency_disable_reason text
);

CREATE TABLE IF NOT EXISTS pg_tviews_queue (
    id           bigserial PRIMARY KEY,
    entity_name  text NOT NULL,
    pk_value     bigint,
    created_at   timestamptz NOT NULL DEFAULT now(),
    processed_at timestamptz
);
CREATE INDEX IF NOT EXISTS pg_tviews_queue_pending_idx ON pg_tviews_queue (created_at) WHERE processed_at IS NULL;

-- One row per component: (status, component, message, severity), the same shape as the
-- extension's tviews.pg_tviews_health_check().
CREATE OR REPLACE FUNCTION pg_tviews_health_check()
RETURNS TABLE (status text, component text, message text, severity text)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN e = 0 THEN 'ok' ELSE 'error' END, 'refresh',
           e || ' of ' || t || ' TVIEWs have a last_error',
           CASE WHEN e = 0 THEN 'info' WHEN e * 2 > t THEN 'critical' ELSE 'warning' END
    FROM (SELECT count(*) FILTER (WHERE last_error IS NOT NULL) AS e, count(*) AS t FROM pg_tviews_metadata) m
    UNION ALL
    SELECT CASE WHEN p > 10000 THEN 'error' WHEN p > 1000 THEN 'warning' ELSE 'ok' END, 'queue',
           p || ' pending refreshes',
           CASE WHEN p > 10000 THEN 'critical' WHEN p > 1000 THEN 'warning' ELSE 'info' END
    FROM (SELECT count(*) AS p FROM pg_tviews_queue WHERE processed_at IS NULL) q
    UNION ALL
    SELECT CASE WHEN d = 0 THEN 'ok' ELSE 'warning' END, 'emergency',
           d || ' TVIEWs emergency disabled',
           CASE WHEN d = 0 THEN 'info' ELSE 'warning' END
    FROM (SELECT count(*) FILTER (WHERE emergency_disabled) AS d FROM pg_tviews_metadata) x
$$;

-- Refresh one TVIEW: re-run its definition check, stamp last_refreshed and duration, clear
-- last_error, mark its pending queue rows processed. Refuses unknown and disabled TVIEWs.
CREATE OR REPLACE FUNCTION pg_tviews_refresh(name text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    meta pg_tviews_metadata%ROWTYPE;
    started timestamptz := clock_timestamp();
BEGIN
    SELECT * INTO meta FROM pg_tviews_metadata WHERE entity_name = name FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'TVIEW % does not exist', name USING ERRCODE = 'undefined_object';
    END IF;
    IF meta.emergency_disabled THEN
        RAISE EXCEPTION 'TVIEW % is emergency disabled (%)', name, meta.emergency_disable_reason
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    BEGIN
        EXECUTE format('SELECT count(*) FROM %I', name);
    EXCEPTION WHEN OTHERS THEN
        UPDATE pg_tviews_metadata SET last_error = SQLERRM WHERE entity_name = name;
        RETURN false;
    END;
    UPDATE pg_tviews_queue SET processed_at = now() WHERE entity_name = name AND processed_at IS NULL;
    UPDATE pg_tviews_metadata
       SET last_error = NULL, last_refreshed = now(),
           last_refresh_duration_ms = GREATEST(1, (EXTRACT(EPOCH FROM clock_timestamp() - started) * 1000)::int)
     WHERE entity_name = name;
    RETURN true;
END
$$;

SELECT count(*) > 0 AS lab_seeded FROM pg_tviews_metadata \gset
\if :lab_seeded
\else
INSERT INTO base_customer (name, region)
SELECT 'customer ' || i, (ARRAY['eu', 'us', 'apac'])[1 + i % 3] FROM generate_series(1, 200) AS i;
INSERT INTO base_product (name, category, price)
SELECT 'product ' || i, (ARRAY['books', 'games', 'tools', 'food'])[1 + i % 4], (i % 90) + 9.99
FROM generate_series(1, 100) AS i;
INSERT INTO base_order (customer_id, product_id, quantity, status)
SELECT 1 + i % 200, 1 + i % 100, 1 + i % 5, (ARRAY['open', 'paid', 'shipped'])[1 + i % 3]
FROM generate_series(1, 2000) AS i;

-- 20 TVIEWs: views over the base tables, registered in pg_tviews_metadata.
DO $$
DECLARE
    defs text[][] := ARRAY[
        ['tv_customer', 'SELECT id, name, region FROM base_customer'],
        ['tv_product', 'SELECT id, name, category, price FROM base_product'],
        ['tv_order', 'SELECT id, customer_id, product_id, quantity, status FROM base_order'],
        ['tv_order_open', 'SELECT * FROM base_order WHERE status = ''open'''],
        ['tv_order_paid', 'SELECT * FROM base_order WHERE status = ''paid'''],
        ['tv_order_shipped', 'SELECT * FROM base_order WHERE status = ''shipped'''],
        ['tv_customer_eu', 'SELECT * FROM base_customer WHERE region = ''eu'''],
        ['tv_customer_us', 'SELECT * FROM base_customer WHERE region = ''us'''],
        ['tv_customer_apac', 'SELECT * FROM base_customer WHERE region = ''apac'''],
        ['tv_product_books', 'SELECT * FROM base_product WHERE category = ''books'''],
        ['tv_product_games', 'SELECT * FROM base_product WHERE category = ''games'''],
        ['tv_product_tools', 'SELECT * FROM base_product WHERE category = ''tools'''],
        ['tv_product_food', 'SELECT * FROM base_product WHERE category = ''food'''],
        ['tv_order_detail', 'SELECT o.id, c.name AS customer, p.name AS product, o.quantity FROM base_order o JOIN base_customer c ON c.id = o.customer_id JOIN base_product p ON p.id = o.product_id'],
        ['tv_customer_orders', 'SELECT customer_id, count(*) AS orders FROM base_order GROUP BY customer_id'],
        ['tv_product_sales', 'SELECT product_id, sum(quantity) AS units FROM base_order GROUP BY product_id'],
        ['tv_region_revenue', 'SELECT c.region, sum(o.quantity * p.price) AS revenue FROM base_order o JOIN base_customer c ON c.id = o.customer_id JOIN base_product p ON p.id = o.product_id GROUP BY c.region'],
        ['tv_category_revenue', 'SELECT p.category, sum(o.quantity * p.price) AS revenue FROM base_order o JOIN base_product p ON p.id = o.product_id GROUP BY p.category'],
        ['tv_order_status', 'SELECT status, count(*) AS orders FROM base_order GROUP BY status'],
        ['tv_top_customers', 'SELECT customer_id, count(*) AS orders FROM base_order GROUP BY customer_id ORDER BY 2 DESC LIMIT 10']
    ];
    i integer;
BEGIN
    FOR i IN 1 .. array_length(defs, 1) LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %I AS %s', defs[i][1], defs[i][2]);
        INSERT INTO pg_tviews_metadata (entity_name, definition, last_refreshed, last_refresh_duration_ms)
        VALUES (defs[i][1], defs[i][2], now() - make_interval(mins => 2 + i), 40 + i * 7)
        ON CONFLICT (entity_name) DO NOTHING;
    END LOOP;
END
$$;

-- Queue history: processed rows, and a handful pending (normal operation).
INSERT INTO pg_tviews_queue (entity_name, pk_value, created_at, processed_at)
SELECT 'tv_order', i, now() - make_interval(mins => 30 + i % 60), now() - make_interval(mins => 29 + i % 60)
FROM generate_series(1, 200) AS i;
INSERT INTO pg_tviews_queue (entity_name, pk_value, created_at)
SELECT 'tv_order', i, now() - make_interval(secs => i * 5) FROM generate_series(1, 5) AS i;
\echo LAB_CHANGED: seeded the runbook catalog fixture (20 TVIEWs)
\endif

-- Grants: the app enqueues, monitoring reads, nobody else writes the catalog.
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"monitor_user";
GRANT SELECT ON ALL TABLES IN SCHEMA public TO :"app_user";
GRANT INSERT ON pg_tviews_queue TO :"app_user";
GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO :"app_user";
GRANT UPDATE (last_error, last_refreshed, last_refresh_duration_ms) ON pg_tviews_metadata TO :"app_user";
GRANT UPDATE (processed_at) ON pg_tviews_queue TO :"app_user";

SELECT count(*) AS lab_objects_after
FROM pg_catalog.pg_class AS c
JOIN pg_catalog.pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' \gset
SELECT 'LAB_CHANGED: created runbook catalog objects' WHERE :lab_objects_after <> :lab_objects_before;
