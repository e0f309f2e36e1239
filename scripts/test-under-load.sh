#!/bin/sh
# Runs `npm test` with CPU burners beside it, to show that the suite holds on a busy machine
# (its waits are on events with generous bounds, not on guessed sleeps).
#
#   npm run test:load            two burners
#   BURNERS=4 npm run test:load  four
#   NICE=19 npm run test:load    the suite itself at nice 19: vmroll's processes are the starved ones
#
# Not for CI: it is meant to be slow. Exits with npm test's exit code.
set -u

burners=${BURNERS:-2}
niceness=${NICE:-0}
case $burners in '' | *[!0-9]*) echo "BURNERS must be a number, not '$burners'" >&2; exit 2 ;; esac
case $niceness in '' | *[!0-9]*) echo "NICE must be a number from 0 to 19, not '$niceness'" >&2; exit 2 ;; esac

pids=''
stop_burners() {
  for pid in $pids; do kill "$pid" 2>/dev/null; done
  pids=''
}
trap 'stop_burners' EXIT
trap 'stop_burners; exit 130' INT TERM

i=0
while [ "$i" -lt "$burners" ]; do
  # A busy loop in the shell alone: no output, no dependency.
  sh -c 'while :; do :; done' &
  pids="$pids $!"
  i=$((i + 1))
done

echo "test:load: $burners CPU burner(s) (pids:$pids) on $(getconf _NPROCESSORS_ONLN 2>/dev/null || echo '?') CPU(s); npm test at nice $niceness"
echo "test:load: load average before: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)"
started=$(date +%s)
nice -n "$niceness" npm test
status=$?
ended=$(date +%s)
load=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || uptime)
stop_burners
if [ "$status" -eq 0 ]; then result=passed; else result="FAILED (exit $status)"; fi
echo "test:load: npm test $result in $((ended - started)) s beside $burners burner(s); load average at the end: $load"
exit "$status"
