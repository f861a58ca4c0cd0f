#!/usr/bin/env bash
# chaos-long.sh: the long chaos run (issue 17): the same topology, load, seeded faults and checker as
# `pnpm chaos`, for long enough to aim at >= 10^5 payments and >= 20 faults, bounded in time.
# Its report is copied to bench/results/chaos-long.json (committed: the latest long run).
#
#   CHAOS_LONG_SEED        seed                         11
#   CHAOS_LONG_DURATION_S  load duration (s)            1800
#   CHAOS_LONG_CLIENTS     concurrent clients           64
#   CHAOS_LONG_DRAIN_S     bound on the drain (s)       600
#   CHAOS_LONG_ABANDON_PCT share of created payments    70     (abandoned checkouts: created, never
#                          abandoned (%)                      authorized; the rest authorize/settle/
#                                                             cancel/refund; every check covers all)
#   CHAOS_LONG_FAULT_GAP_S least gap between faults (s) 20     (20..24 s: ~150 faults an hour)
#   CHAOS_LONG_PAYMENTS    stop the load at this many   100000 (0: the duration alone bounds it)
#                          created payments
#
# The whole run is bounded by `timeout` (duration + drain + 30 min for start-up, retries of undecided
# keys and the checks); on a timeout nothing is copied and the exit code is 124. The report replaces
# bench/results/chaos-long.json only when the run PASSED with at least the default duration (a
# failed or shortened run keeps its report where the chaos run wrote it, bench/results/chaos-*.json).
# SIGTERM or Ctrl-C to this script is passed on to the run, which stops its clients and faults and
# removes what it started before it exits. `--help` prints this header; it takes no arguments.
set -euo pipefail
if [[ $# -gt 0 ]]; then
  if [[ "$1" == "--help" || "$1" == "-h" ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'
    exit 0
  fi
  echo "chaos-long.sh takes no arguments (settings are environment variables; --help lists them)" >&2
  exit 2
fi
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/.." && pwd)"
cd "$REPO"
# shellcheck source=scripts/env.sh
source scripts/env.sh

SEED="${CHAOS_LONG_SEED:-11}"
DURATION_S="${CHAOS_LONG_DURATION_S:-1800}"
CLIENTS="${CHAOS_LONG_CLIENTS:-64}"
DRAIN_S="${CHAOS_LONG_DRAIN_S:-600}"
ABANDON_PCT="${CHAOS_LONG_ABANDON_PCT:-70}"
FAULT_GAP_S="${CHAOS_LONG_FAULT_GAP_S:-20}"
PAYMENTS="${CHAOS_LONG_PAYMENTS:-100000}"
BOUND_S=$(( DURATION_S + DRAIN_S + 1800 ))

LOG="$(mktemp -t chaos-long.XXXXXX.log)"
echo "chaos-long: seed $SEED, $DURATION_S s, $CLIENTS clients, $ABANDON_PCT % abandoned, faults every >= $FAULT_GAP_S s, stop at $PAYMENTS payments, drain <= $DRAIN_S s, bounded at $BOUND_S s; log $LOG"
set +e
# `timeout` puts the run in a process group of its own, where a signal to this script does not
# reach it: the trap passes SIGTERM/SIGINT on, and the script waits for the run's clean-up.
timeout --signal=TERM --kill-after=60 "$BOUND_S" \
  node packages/scenarios/src/chaos/main.ts --seed "$SEED" --duration "$DURATION_S" --clients "$CLIENTS" --drain "$DRAIN_S" --abandon "$ABANDON_PCT" --fault-gap "$FAULT_GAP_S" --payments "$PAYMENTS" > >(tee "$LOG") 2>&1 &
RUN_PID=$!
trap 'kill -TERM "$RUN_PID" 2>/dev/null' TERM INT
wait "$RUN_PID"
CODE=$?
while kill -0 "$RUN_PID" 2>/dev/null; do
  wait "$RUN_PID"
  CODE=$?
done
trap - TERM INT
set -e
REPORT="$(sed -n 's/^report: //p' "$LOG" | tail -n1)"
if [[ -z "$REPORT" || ! -f "$REPORT" ]]; then
  echo "chaos-long: no report (exit $CODE)" >&2
elif [[ "$CODE" -eq 0 && "$DURATION_S" -ge 1800 ]]; then
  cp "$REPORT" bench/results/chaos-long.json
  echo "chaos-long: PASS; report copied to bench/results/chaos-long.json"
else
  echo "chaos-long: report $REPORT (exit $CODE; bench/results/chaos-long.json is kept: it is replaced by a passing run of at least 1800 s only)"
fi
exit "$CODE"
