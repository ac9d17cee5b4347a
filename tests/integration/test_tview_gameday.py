"""The pg_tviews gameday faults: caused for real in the lab's fixtures, idempotent both ways, cleared."""


def test_tview_refresh_errors(gameday, tviews, ansible):
    run = gameday('tview_refresh_errors')
    assert run.rc == 0 and run.changed == 1, run
    assert tviews.query("SELECT count(*) FROM pg_tviews_metadata WHERE last_error LIKE 'gameday: %%'", ())[0][0] == 12
    assert tviews.query('SELECT count(*) FROM tviews._registry WHERE needs_reregister', dbname='tviews_ext')[0][0] == 5
    rc, result, out = ansible.module('tview_info', dict(login_db='tviews_runbook'))
    assert rc == 0 and result['emergency_label'] == 'CRITICAL: Majority of TVIEWs failing', out
    again = gameday('tview_refresh_errors')
    assert again.rc == 0 and again.changed == 0, again
    cleared = gameday('tview_refresh_errors', 'clear')
    assert cleared.rc == 0 and cleared.changed == 1, cleared
    assert tviews.query('SELECT count(*) FROM pg_tviews_metadata WHERE last_error IS NOT NULL')[0][0] == 0
    assert tviews.query('SELECT count(*) FROM tviews._registry WHERE needs_reregister', dbname='tviews_ext')[0][0] == 0
    assert gameday('tview_refresh_errors', 'clear').changed == 0


def test_queue_backlog(gameday, tviews):
    run = gameday('queue_backlog')
    assert run.rc == 0 and run.changed == 1, run
    assert tviews.pending() == 20005
    assert gameday('queue_backlog').changed == 0
    assert tviews.pending() == 20005
    cleared = gameday('queue_backlog', 'clear')
    assert cleared.rc == 0 and cleared.changed == 1, cleared
    assert tviews.pending() == 5
    assert gameday('queue_backlog', 'clear').changed == 0


def test_stale_tviews(gameday, tviews, ansible):
    before = tviews.catalog()
    run = gameday('stale_tviews', gameday_stale_count=3)
    assert run.rc == 0 and run.changed == 1, run
    rc, result, out = ansible.module('tview_info', dict(login_db='tviews_runbook'))
    assert rc == 0 and len(result['stale']) == 3 and result['emergency_label'] == 'HIGH: TVIEWs stale', out
    assert gameday('stale_tviews', gameday_stale_count=3).changed == 0
    cleared = gameday('stale_tviews', 'clear')
    assert cleared.rc == 0 and cleared.changed == 1, cleared
    assert tviews.catalog() == before  # the previous refresh times are back
    assert gameday('stale_tviews', 'clear').changed == 0


def test_refresh_backends(gameday, lab):
    run = gameday('refresh_backends', gameday_sessions=3)
    assert run.rc == 0 and run.changed == 1, run
    rows = lab.query("SELECT datname, state, query FROM pg_stat_activity WHERE application_name = 'gameday_refresh'")
    assert len(rows) == 3
    assert all(r[0] == 'tviews_runbook' and r[1] == 'active' and 'pg_tviews_refresh' in r[2] for r in rows)
    assert gameday('refresh_backends', gameday_sessions=3).changed == 0
    cleared = gameday('refresh_backends', 'clear')
    assert cleared.rc == 0 and cleared.changed == 1, cleared
    assert lab.pids('gameday_refresh') == []
