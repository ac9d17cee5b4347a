#!/usr/bin/env bash
# The main jobs on the lab (`make demo` starts the lab first):
# Part 1, pg_tviews emergency (the main job):
#   gameday causes TVIEW refresh errors, a 20,000-row refresh backlog and sessions busy in refreshes;
#   emergency_disable.yml --check shows the plan and changes nothing (catalog, queue and sessions compared);
#   emergency_disable.yml -e approve=true acts (cancel refreshes, archive+clear the queue, disable TVIEWs) and
#   prints the summary with the exit criteria; then the demo puts the lab back (restore the archived rows).
# Part 2, connection pool exhaustion:
#   sessions idle in transaction plus one protected monitoring session; connection_pool_exhausted.yml --check,
#   then for real: exactly those sessions end, the protected one survives.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

LAB_DIR="${LAB_DIR:-${INCIDENT_LAB_DIR:-/var/lib/incident-response-lab}}"
if [ ! -f "$LAB_DIR/lab.env" ]; then
  echo "demo: $LAB_DIR/lab.env not found: run make lab-up first" >&2
  exit 1
fi
set -a
# shellcheck disable=SC1091
. "$LAB_DIR/lab.env"
set +a
export ANSIBLE_CONFIG="$PWD/ansible.cfg"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

# ---------------------------------------------------------------- part 1: pg_tviews emergency
TVDB=tviews_runbook
INCIDENT_ID="demo-$(date +%Y%m%dT%H%M%S)"
POOL_INCIDENT_ID="demo-pool-$(date +%Y%m%dT%H%M%S)"
tv() { psql -X -d "$TVDB" "$@"; }
tv_state() {
  tv -Atq -c "SELECT (SELECT md5(string_agg(m::text, '|' ORDER BY m::text)) FROM pg_tviews_metadata m)
              || ' ' || (SELECT count(*) FROM pg_tviews_queue WHERE processed_at IS NULL)
              || ' ' || (SELECT string_agg(pid::text || coalesce(state, ''), ',' ORDER BY pid) FROM pg_stat_activity
                         WHERE datname = '$TVDB' AND application_name <> 'psql')"
}
tv_overview() {
  tv -q -P pager=off -c "
    SELECT count(*) AS tviews,
           count(*) FILTER (WHERE last_error IS NOT NULL) AS with_errors,
           count(*) FILTER (WHERE emergency_disabled) AS disabled,
           (SELECT count(*) FROM pg_tviews_queue WHERE processed_at IS NULL) AS pending_queue,
           (SELECT count(*) FROM pg_stat_activity WHERE query ~* 'pg_tviews_refresh' AND state = 'active'
              AND pid <> pg_backend_pid()) AS refresh_backends
    FROM pg_tviews_metadata"
}
tv_cleanup() {
  ansible-playbook playbooks/gameday.yml -e fault=refresh_backends -e gameday_action=clear >/dev/null 2>&1 || true
  ansible localhost -m incident.response.tview_queue \
    -a "{\"action\": \"restore\", \"incident_id\": \"$INCIDENT_ID\", \"login_db\": \"$TVDB\"}" >/dev/null 2>&1 || true
  ansible localhost -m incident.response.tview_state \
    -a "{\"state\": \"enabled\", \"all\": true, \"login_db\": \"$TVDB\"}" >/dev/null 2>&1 || true
  ansible-playbook playbooks/gameday.yml -e fault=queue_backlog -e gameday_action=clear >/dev/null 2>&1 || true
  ansible-playbook playbooks/gameday.yml -e fault=tview_refresh_errors -e gameday_action=clear >/dev/null 2>&1 || true
}
trap tv_cleanup EXIT

step "Incident: TVIEW refresh errors, a 20,000-row refresh backlog, sessions stuck in refreshes (gameday)"
for fault in tview_refresh_errors queue_backlog refresh_backends; do
  echo "gameday: $fault"
  ansible-playbook playbooks/gameday.yml -e fault="$fault" >/dev/null
done
tv_overview

step "Dry run: ansible-playbook playbooks/emergency_disable.yml --check"
before=$(tv_state)
ansible-playbook playbooks/emergency_disable.yml --check -e pg_login_db="$TVDB" \
  -e incident_id="$INCIDENT_ID"
after=$(tv_state)
if [ "$before" != "$after" ]; then
  echo "demo: the --check run changed the catalog, the queue or the sessions" >&2
  exit 1
fi
echo "Catalog, queue and sessions are exactly as before the dry run:"
tv_overview

step "Emergency, approved: ansible-playbook playbooks/emergency_disable.yml -e approve=true"
ansible-playbook playbooks/emergency_disable.yml -e approve=true -e pg_login_db="$TVDB" \
  -e incident_id="$INCIDENT_ID"
step "After the emergency protocol"
tv_overview
tv -q -P pager=off -c "SELECT incident_id, count(*) AS archived_queue_rows FROM pg_tviews_queue_archive
                       WHERE incident_id = '$INCIDENT_ID' GROUP BY 1" || true
STORE="${INCIDENT_STORE_PATH:-/var/tmp/incident-response/incidents}"
echo "Incident $INCIDENT_ID: record $STORE/$INCIDENT_ID.json, timeline $STORE/$INCIDENT_ID.events.jsonl"
echo "Evidence saved under $STORE/$INCIDENT_ID/evidence"

step "Putting the lab back: restore the archived queue rows, re-enable the TVIEWs, clear the faults"
tv_cleanup
tv_overview
trap - EXIT

# ---------------------------------------------------------------- part 2: connection pool exhaustion
SESSIONS="${DEMO_SESSIONS:-5}"
# The runbooks' threshold is 30 minutes; the demo's sessions are seconds old.
THRESHOLD="${DEMO_THRESHOLD:-10s}"
WAIT=$(( ${THRESHOLD%s} + 2 ))

sessions() {
  psql -X -q -P pager=off -c "
    SELECT pid, usename, application_name, state, (now() - state_change)::interval(0) AS in_state_for
    FROM pg_stat_activity
    WHERE application_name IN ('gameday_idle_tx', 'postgres_exporter') ORDER BY application_name, pid"
}
count() {
  psql -X -Atq -c "SELECT count(*) FROM pg_stat_activity WHERE application_name = '$1'"
}
cleanup() {
  ansible-playbook playbooks/gameday.yml -e fault=idle_in_transaction -e gameday_action=clear >/dev/null 2>&1 || true
}
trap cleanup EXIT

step "Incident: $SESSIONS application sessions left idle in transaction (gameday fault idle_in_transaction)"
ansible-playbook playbooks/gameday.yml -e fault=idle_in_transaction -e gameday_sessions="$SESSIONS"
echo "Letting them age past the demo threshold of $THRESHOLD ..."
sleep "$WAIT"
sessions

step "Dry run: ansible-playbook playbooks/connection_pool_exhausted.yml --check"
before=$(psql -X -Atq -c "SELECT string_agg(pid::text || state, ',' ORDER BY pid) FROM pg_stat_activity
                          WHERE application_name IN ('gameday_idle_tx', 'postgres_exporter')")
ansible-playbook playbooks/connection_pool_exhausted.yml --check \
  -e pg_connections_idle_in_transaction_age="$THRESHOLD" -e '{"pg_connections_databases": ["scheduler"]}' \
  -e incident_id="$POOL_INCIDENT_ID"
after=$(psql -X -Atq -c "SELECT string_agg(pid::text || state, ',' ORDER BY pid) FROM pg_stat_activity
                         WHERE application_name IN ('gameday_idle_tx', 'postgres_exporter')")
if [ "$before" != "$after" ]; then
  echo "demo: the --check run changed pg_stat_activity" >&2
  exit 1
fi
echo "pg_stat_activity is the same as before the dry run:"
sessions

step "Remediation: ansible-playbook playbooks/connection_pool_exhausted.yml"
ansible-playbook playbooks/connection_pool_exhausted.yml \
  -e pg_connections_idle_in_transaction_age="$THRESHOLD" -e '{"pg_connections_databases": ["scheduler"]}' \
  -e incident_id="$POOL_INCIDENT_ID"

step "What happened"
sessions
left=$(count gameday_idle_tx)
kept=$(count postgres_exporter)
echo "Sessions idle in transaction left: $left (were $SESSIONS)"
echo "Protected monitoring session (postgres_exporter, member of pg_monitor) still connected: $kept"
if [ "$left" != 0 ] || [ "$kept" != 1 ]; then
  echo "demo: unexpected outcome" >&2
  exit 1
fi
echo "Demo done: the dry run listed $SESSIONS sessions and ended none; the real run ended exactly those."

# The incident record of both incidents: ids, the emergency's timeline, a notification, the review.
python scripts/demo_incident.py "${INCIDENT_STORE_PATH:-/var/tmp/incident-response/incidents}" "$INCIDENT_ID" \
  "$POOL_INCIDENT_ID"
