#!/bin/bash
# Usage: stop.sh DIR
# Stops the etcd and kube-apiserver started by start.sh DIR (PIDs from DIR/pids:
# SIGTERM, then SIGKILL after STOP_TIMEOUT seconds, default 20) and removes DIR.
# Set KEEP_DIR=1 to keep DIR (logs) instead of removing it.
set -uo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
DIR=$1
STOP_TIMEOUT=${STOP_TIMEOUT:-20}
if [ ! -f "$DIR/pids" ]; then
  echo "$DIR/pids not found: nothing started by start.sh there" >&2
  exit 1
fi
read -r ETCD_PID KAS_PID < "$DIR/pids"

# only signal a PID that still runs the expected program
alive() { # pid name
  [ -n "$1" ] && kill -0 "$1" 2>/dev/null && grep -q "$2" "/proc/$1/comm" 2>/dev/null
}

# apiserver first, so it does not log etcd errors while shutting down
for spec in "$KAS_PID kube-apiserver" "$ETCD_PID etcd"; do
  set -- $spec
  pid=$1 name=$2
  alive "$pid" "$name" || continue
  kill -TERM "$pid" 2>/dev/null
  deadline=$(( $(date +%s) + STOP_TIMEOUT ))
  while alive "$pid" "$name" && [ "$(date +%s)" -lt "$deadline" ]; do sleep 0.2; done
  if alive "$pid" "$name"; then
    echo "$name ($pid) still running after ${STOP_TIMEOUT}s, sending SIGKILL" >&2
    kill -KILL "$pid" 2>/dev/null
    sleep 0.5
  fi
done

status=0
for spec in "$KAS_PID kube-apiserver" "$ETCD_PID etcd"; do
  set -- $spec
  if alive "$1" "$2"; then echo "$2 ($1) did not stop" >&2; status=1; fi
done

if [ "$status" = 0 ] && [ "${KEEP_DIR:-0}" != 1 ]; then
  rm -rf -- "$DIR"
fi
exit $status
