#!/usr/bin/env bash
# The main job on the lab (`make demo` starts the lab first):
#   1. gameday causes a real incident: sessions idle in transaction, plus one protected monitoring session;
#   2. connection_pool_exhausted.yml --check shows the plan and changes nothing;
#   3. the same playbook for real ends exactly those sessions, the protected one survives;
#   4. a summary of what happened, read from pg_stat_activity.
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

SESSIONS="${DEMO_SESSIONS:-5}"
# The runbooks' threshold is 30 minutes; the demo's sessions are seconds old.
THRESHOLD="${DEMO_THRESHOLD:-10s}"
WAIT=$(( ${THRESHOLD%s} + 2 ))

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
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
  -e pg_connections_idle_in_transaction_age="$THRESHOLD" -e '{"pg_connections_databases": ["scheduler"]}'
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
  -e pg_connections_idle_in_transaction_age="$THRESHOLD" -e '{"pg_connections_databases": ["scheduler"]}'

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
