"""The pure parts of the PgBouncer modules: views of SHOW output, the assessment, the plan and its diff."""
from module_harness import Failed, run

from ansible_collections.incident.response.plugins.module_utils._pgbouncer import (
    connection_summary,
    database_views,
    pool_views,
    quote_name,
)
from ansible_collections.incident.response.plugins.modules import pgbouncer_info, pgbouncer_pool
from ansible_collections.incident.response.plugins.modules.pgbouncer_info import assess
from ansible_collections.incident.response.plugins.modules.pgbouncer_pool import plan, predict, validate_databases

DATABASES = [
    dict(name='pgbouncer', host=None, port=6432, database='pgbouncer', pool_size=2, paused=0, disabled=0),
    dict(name='app', host='db', port=5432, database='app', pool_size=3, reserve_pool=0, pool_mode=None,
         max_connections=0, current_connections=3, paused=0, disabled=0),
    dict(name='reports', host='db', port=5432, database='reports', pool_size=5, paused=1, disabled=0),
]
POOLS = [
    dict(database='pgbouncer', user='pgbouncer', cl_active=1, cl_waiting=0, sv_active=0, maxwait=0, maxwait_us=0),
    dict(database='app', user='app', cl_active=3, cl_waiting=4, sv_active=3, sv_idle=0, sv_used=0, maxwait=12,
         maxwait_us=400000, pool_mode='transaction'),
    dict(database='reports', user='bi', cl_active=1, cl_waiting=0, sv_active=1, sv_idle=2, sv_used=0, maxwait=0,
         maxwait_us=0, pool_mode='session'),
]
THRESHOLDS = dict(max_wait_warning=1.0, max_wait_critical=5.0, utilisation_warning_pct=80.0,
                  utilisation_critical_pct=100.0)


def test_views_leave_out_the_admin_console_and_compute_utilisation():
    dbs = database_views(DATABASES)
    assert set(dbs) == {'app', 'reports'} and dbs['reports']['paused'] is True
    pools = pool_views(POOLS, dbs)
    app = pools[0]
    assert (app['database'], app['maxwait_seconds'], app['utilisation_pct'], app['exhausted']) == ('app', 12.4,
                                                                                                   100.0, True)
    assert pools[1]['utilisation_pct'] == 20.0 and pools[1]['exhausted'] is False


def test_assessment_names_the_exhausted_pool_and_the_paused_database():
    dbs = database_views(DATABASES)
    status, reasons, totals = assess(pool_views(POOLS, dbs), dbs, THRESHOLDS)
    assert status == 'critical'
    assert reasons[0] == 'pool app/app: 4 clients waiting, the longest for 12.4s (critical at 5s)'
    assert 'pool app/app: 3 of 3 servers active (100.0%, critical at 100.0%)' in reasons
    assert 'database reports is paused (PAUSE): its clients wait until RESUME' in reasons
    assert totals == dict(cl_waiting=4, cl_active=4, sv_active=4, maxwait_seconds=12.4, exhausted_pools=['app/app'])


def test_a_full_pool_with_no_one_waiting_is_a_warning():
    dbs = database_views(DATABASES[:2])
    pools = pool_views([dict(POOLS[1], cl_waiting=0, maxwait=0, maxwait_us=0)], dbs)
    status, reasons, dummy = assess(pools, dbs, THRESHOLDS)
    assert status == 'warning' and reasons == ['pool app/app: 3 of 3 servers active (100.0%, warning at 80.0%)']


def test_connection_summary():
    rows = [dict(database='app', user='app', state='active', application_name='api', close_needed=1),
            dict(database='app', user='app', state='waiting', application_name='api', close_needed=0),
            dict(database='pgbouncer', user='admin', state='active', application_name='')]
    assert connection_summary(rows) == dict(app=dict(total=2, by_state=dict(active=1, waiting=1),
                                                     by_user=dict(app=2), by_application=dict(api=2), close_needed=1))


STATE = dict(app=dict(paused=False, disabled=False, clients=3, servers=3, close_needed=0),
             quiet=dict(paused=True, disabled=False, clients=0, servers=0, close_needed=0))


def test_plan_is_idempotent_from_the_state():
    assert plan('pause', ['app', 'quiet'], STATE) == ([('app', 'PAUSE')], ['quiet is already paused'])
    assert plan('resume', ['app', 'quiet'], STATE) == ([('quiet', 'RESUME')], ['app is not paused'])
    assert plan('reconnect', ['app'], STATE)[0] == [('app', 'RECONNECT')]
    marked = dict(app=dict(STATE['app'], close_needed=3))
    assert plan('reconnect', ['app'], marked)[0] == []
    assert plan('wait_close', ['app'], STATE)[0] == [] and plan('wait_close', ['app'], marked)[0] == [('app', 'WAIT_CLOSE')]
    assert plan('kill', ['app'], STATE)[0] == [('app', 'KILL'), ('app', 'RESUME')]
    assert plan('kill', ['app'], STATE, resume_after_kill=False)[0] == [('app', 'KILL')]
    assert plan('kill', ['quiet'], STATE)[0] == [('quiet', 'RESUME')], 'a killed database left paused is resumed'
    assert plan('kill', ['quiet'], STATE, resume_after_kill=False)[0] == []


def test_predicted_diff():
    after = predict(STATE, [('app', 'KILL'), ('app', 'RESUME')])
    assert after['app'] == dict(paused=False, disabled=False, clients=0, servers=0, close_needed=0)
    assert predict(STATE, [('app', 'RECONNECT')])['app']['close_needed'] == 3
    assert STATE['app']['close_needed'] == 0, 'the state read is not changed'


def test_databases_must_be_named():
    assert 'never sends a command for all databases at once' in validate_databases([])
    assert 'never sends a command for all databases at once' in validate_databases(None)
    assert validate_databases(['app', '']) == 'databases must not contain an empty name'
    assert "admin console" in validate_databases(['pgbouncer'])
    assert 'more than once' in validate_databases(['app', 'app'])
    assert validate_databases(['app']) is None


def test_names_are_quoted_identifiers():
    assert quote_name('app') == '"app"' and quote_name('we"ird') == '"we""ird"'


def test_argument_refusals_before_connecting():
    kind, result = run(pgbouncer_pool, dict(action='kill', allow_kill=True, host='127.0.0.1', port=1))
    assert kind is Failed and result['msg'].startswith('databases must name at least one PgBouncer database')
    kind, result = run(pgbouncer_pool, dict(action='kill', databases=['app'], host='127.0.0.1', port=1))
    assert kind is Failed and 'set allow_kill: true' in result['msg']
    kind, result = run(pgbouncer_pool, dict(action='pause', databases=['app'], wait_timeout='0', port=1))
    assert kind is Failed and result['msg'].startswith('wait_timeout')
    kind, result = run(pgbouncer_info, dict(max_wait_warning='10s', max_wait_critical='1s', port=1))
    assert kind is Failed and result['msg'] == 'max_wait_warning (10s) must not exceed max_wait_critical (1s)'
    kind, result = run(pgbouncer_info, dict(command_timeout='inf', port=1))
    assert kind is Failed and result['msg'].startswith('command_timeout')
    kind, result = run(pgbouncer_info, dict(host='127.0.0.1', port=1, password='s3cret-pw'))
    assert kind is Failed and result['msg'].startswith('Unable to connect to PgBouncer at 127.0.0.1:1 as pgbouncer')
    assert 's3cret-pw' not in repr(result)
