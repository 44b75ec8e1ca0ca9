#!/bin/bash
# Usage: start.sh DIR ETCD_CLIENT_PORT ETCD_PEER_PORT SECURE_PORT
#
# Starts /usr/bin/etcd and kube-apiserver v1.20.2 (build.sh; default /opt/kas/kube-apiserver) in the background,
# everything on 127.0.0.1 only, state and logs in DIR:
#   DIR/etcd/            etcd data dir
#   DIR/etcd.log         etcd log
#   DIR/kube-apiserver.log
#   DIR/pki/             service-account key, self-signed serving cert
#   DIR/tokens.csv       static token file (user "admin", group system:masters)
#   DIR/admin.token      the admin bearer token
#   DIR/kubeconfig       server https://127.0.0.1:SECURE_PORT, insecure-skip-tls-verify, admin token
#   DIR/pids             "ETCD_PID KUBE_APISERVER_PID" (one line), only once /readyz is ok
# Waits until /readyz answers "ok" (deadline READY_TIMEOUT seconds, default 90).
# On failure: kills what it started, prints the log tails, exits 1 (DIR is kept for the logs).
# Flags beyond the required ones: --tls-cert-file/--tls-private-key-file (openssl
# self-signed cert, SAN 127.0.0.1/localhost) and --endpoint-reconciler-type none (1.20
# refuses a loopback address in the "kubernetes" Endpoints and would retry and log an
# error every 10 s). 1.20 has no insecure port any more; only the three ports listen.
# Env overrides: KUBE_APISERVER (binary), ETCD (binary), READY_TIMEOUT,
#                KAS_EXTRA_ARGS (extra kube-apiserver flags, word-split).
set -euo pipefail

if [ $# -ne 4 ]; then
  echo "usage: $0 DIR ETCD_CLIENT_PORT ETCD_PEER_PORT SECURE_PORT" >&2
  exit 2
fi
DIR=$1 ETCD_CLIENT_PORT=$2 ETCD_PEER_PORT=$3 SECURE_PORT=$4
KUBE_APISERVER=${KUBE_APISERVER:-/opt/kas/kube-apiserver}
ETCD=${ETCD:-/usr/bin/etcd}
READY_TIMEOUT=${READY_TIMEOUT:-90}
HOST=127.0.0.1

for p in "$ETCD_CLIENT_PORT" "$ETCD_PEER_PORT" "$SECURE_PORT"; do
  [[ $p =~ ^[0-9]+$ ]] && [ "$p" -gt 0 ] && [ "$p" -lt 65536 ] || { echo "bad port: $p" >&2; exit 2; }
  if ss -Hltn "sport = :$p" | grep -q .; then
    echo "port $p is already in use" >&2; exit 1
  fi
done
if [ "$ETCD_CLIENT_PORT" = "$ETCD_PEER_PORT" ] || [ "$ETCD_CLIENT_PORT" = "$SECURE_PORT" ] || [ "$ETCD_PEER_PORT" = "$SECURE_PORT" ]; then
  echo "the three ports must differ" >&2; exit 2
fi
if [ -e "$DIR/pids" ]; then
  echo "$DIR/pids exists: already started? (use stop.sh $DIR first)" >&2; exit 1
fi

mkdir -p "$DIR"
DIR=$(cd "$DIR" && pwd)
mkdir -p "$DIR/pki" "$DIR/etcd"
chmod 700 "$DIR/etcd" "$DIR/pki"

# --- credentials -------------------------------------------------------------
openssl genrsa -out "$DIR/pki/sa.key" 2048 2>/dev/null
openssl rsa -in "$DIR/pki/sa.key" -pubout -out "$DIR/pki/sa.pub" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 \
  -keyout "$DIR/pki/apiserver.key" -out "$DIR/pki/apiserver.crt" \
  -subj "/CN=kube-apiserver" \
  -addext "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,IP:10.43.0.1" \
  2>/dev/null
TOKEN=$(openssl rand -hex 32)
printf '%s\n' "$TOKEN" > "$DIR/admin.token"
# token,user,uid,"group1,group2"
printf '%s,admin,admin,"system:masters"\n' "$TOKEN" > "$DIR/tokens.csv"
chmod 600 "$DIR/admin.token" "$DIR/tokens.csv"

cat > "$DIR/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: kas
  cluster:
    server: https://$HOST:$SECURE_PORT
    insecure-skip-tls-verify: true
users:
- name: admin
  user:
    token: $TOKEN
contexts:
- name: kas
  context:
    cluster: kas
    user: admin
current-context: kas
EOF
chmod 600 "$DIR/kubeconfig"

ETCD_PID= KAS_PID=
fail() {
  echo "start.sh: $*" >&2
  for f in etcd.log kube-apiserver.log; do
    [ -f "$DIR/$f" ] && { echo "--- tail $DIR/$f" >&2; tail -n 30 "$DIR/$f" >&2; }
  done
  for pid in $KAS_PID $ETCD_PID; do kill "$pid" 2>/dev/null || true; done
  sleep 2
  for pid in $KAS_PID $ETCD_PID; do kill -9 "$pid" 2>/dev/null || true; done
  exit 1
}

# --- etcd --------------------------------------------------------------------
setsid "$ETCD" \
  --name kas \
  --data-dir "$DIR/etcd" \
  --listen-client-urls "http://$HOST:$ETCD_CLIENT_PORT" \
  --advertise-client-urls "http://$HOST:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
  --initial-advertise-peer-urls "http://$HOST:$ETCD_PEER_PORT" \
  --initial-cluster "kas=http://$HOST:$ETCD_PEER_PORT" \
  --initial-cluster-state new \
  </dev/null >"$DIR/etcd.log" 2>&1 &
ETCD_PID=$!

deadline=$(( $(date +%s) + READY_TIMEOUT ))
until curl -fsS -m 2 "http://$HOST:$ETCD_CLIENT_PORT/health" 2>/dev/null | grep -q '"health":"true"'; do
  kill -0 "$ETCD_PID" 2>/dev/null || fail "etcd exited"
  [ "$(date +%s)" -lt "$deadline" ] || fail "etcd not healthy within ${READY_TIMEOUT}s"
  sleep 0.5
done

# --- kube-apiserver ----------------------------------------------------------
# shellcheck disable=SC2086
setsid "$KUBE_APISERVER" \
  --etcd-servers "http://$HOST:$ETCD_CLIENT_PORT" \
  --bind-address "$HOST" \
  --advertise-address "$HOST" \
  --secure-port "$SECURE_PORT" \
  --tls-cert-file "$DIR/pki/apiserver.crt" \
  --tls-private-key-file "$DIR/pki/apiserver.key" \
  --authorization-mode RBAC \
  --token-auth-file "$DIR/tokens.csv" \
  --service-account-issuer https://kubernetes.default.svc \
  --service-account-key-file "$DIR/pki/sa.pub" \
  --service-account-signing-key-file "$DIR/pki/sa.key" \
  --service-cluster-ip-range 10.43.0.0/16 \
  --endpoint-reconciler-type none \
  ${KAS_EXTRA_ARGS:-} \
  </dev/null >"$DIR/kube-apiserver.log" 2>&1 &
KAS_PID=$!

until [ "$(curl -ksS -m 5 -H "Authorization: Bearer $TOKEN" "https://$HOST:$SECURE_PORT/readyz" 2>/dev/null)" = "ok" ]; do
  kill -0 "$KAS_PID" 2>/dev/null || fail "kube-apiserver exited"
  kill -0 "$ETCD_PID" 2>/dev/null || fail "etcd exited"
  [ "$(date +%s)" -lt "$deadline" ] || fail "kube-apiserver /readyz not ok within ${READY_TIMEOUT}s"
  sleep 0.5
done

echo "$ETCD_PID $KAS_PID" > "$DIR/pids"
echo "ready: https://$HOST:$SECURE_PORT  kubeconfig=$DIR/kubeconfig  pids: etcd=$ETCD_PID kube-apiserver=$KAS_PID"
