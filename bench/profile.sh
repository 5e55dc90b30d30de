#!/usr/bin/env bash
# Instructions per request (callgrind) for the proxy (nginx upstream) and GET /connections/{id}
# (SQLite, warm cache), after 200 warm-up requests: stable on a noisy shared machine, unlike
# timings. Compare builds: bench/profile.sh target/release/grantd after [N]; per-function costs:
# python3 bench/callgrind_top.py bench/out/profile-after/proxy.callgrind 40 "" "grantd::"
# Needs valgrind, nginx, curl, python3. Output: bench/out/profile-LABEL/.
set -euo pipefail
BIN=$1; LABEL=$2; N=${3:-2000}
OUT=$(cd "$(dirname "$0")" && pwd)/out/profile-$LABEL; rm -rf "$OUT"; mkdir -p "$OUT"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
EMU_PORT=$(free_port)
"$BIN" emulator --port "$EMU_PORT" >"$OUT/emulator.log" 2>&1 & PIDS+=($!)
EMU=http://127.0.0.1:$EMU_PORT
until curl -sf "$EMU/_emulator/health" >/dev/null; do sleep 0.05; done
curl -sf "$EMU/_emulator/admin-consents" -H 'Content-Type: application/json' \
  -d '{"tenant":"fabrikam","client_id":"7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60"}' >/dev/null
TOKEN=$(curl -sf "$EMU/fabrikam.onmicrosoft.com/oauth2/v2.0/token" \
  -d grant_type=client_credentials -d client_id=7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60 \
  --data-urlencode 'client_secret=gDv8Q~emulator.dev-secret_0123456789abcdefgh' \
  --data-urlencode 'scope=https://graph.microsoft.com/.default' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
NG_PORT=$(free_port); NGDIR=$OUT/nginx; mkdir -p "$NGDIR"
cat >"$NGDIR/nginx.conf" <<NG
worker_processes 1; daemon off; pid $NGDIR/nginx.pid; error_log $NGDIR/error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$NG_PORT; location / { default_type application/json; return 200 '{"ok":true}'; } } }
NG
nginx -c "$NGDIR/nginx.conf" -p "$NGDIR" & PIDS+=($!)
until curl -sf "http://127.0.0.1:$NG_PORT/" >/dev/null; do sleep 0.05; done
SECRET=$(python3 -c 'import uuid; print(uuid.uuid4())')
KEYB64=$(python3 -c 'import os,base64; print(base64.b64encode(os.urandom(32)).decode())')
PORT=$(free_port)
GRANTD_SECRET_KEY=$SECRET GRANTD_ENCRYPTION_KEY=$KEYB64 GRANTD_DATABASE_URL="sqlite://$OUT/g.db?mode=rwc" \
GRANTD_HOST=127.0.0.1 GRANTD_PORT=$PORT GRANTD_MICROSOFT_LOGIN_URL=http://127.0.0.1:$NG_PORT GRANTD_MICROSOFT_GRAPH_URL=http://127.0.0.1:$NG_PORT \
GRANTD_MICROSOFT_SHAREPOINT_URL="http://127.0.0.1:$NG_PORT/_sharepoint/{host}" RUST_LOG=warn \
  valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" "$BIN" serve >"$OUT/grantd.log" 2>&1 &
GPID=$!; PIDS+=($GPID)
G=http://127.0.0.1:$PORT
until curl -sf "$G/ready" >/dev/null 2>&1; do sleep 0.2; done
api() { curl -sf -H "Authorization: Bearer $SECRET" -H 'Content-Type: application/json' "$@"; }
api "$G/integrations" -d '{"provider":"one-drive","unique_key":"bench","credentials":{"type":"OAUTH2","client_id":"7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60","client_secret":"gDv8Q~emulator.dev-secret_0123456789abcdefgh","scopes":"User.Read"}}' >/dev/null
api "$G/connections" -d "{\"provider_config_key\":\"bench\",\"connection_id\":\"c1\",\"credentials\":{\"type\":\"OAUTH2\",\"access_token\":\"$TOKEN\",\"expires_at\":\"2099-01-01T00:00:00Z\"}}" >/dev/null
load() { # path n
python3 - "$PORT" "$1" "$2" "$SECRET" <<'PY'
import http.client, sys
port, path, n, secret = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4]
c = http.client.HTTPConnection("127.0.0.1", port)
h = {"Authorization": "Bearer " + secret, "Provider-Config-Key": "bench", "Connection-Id": "c1"}
for i in range(n):
    c.request("GET", path, headers=h); r = c.getresponse(); b = r.read()
    assert r.status == 200, (r.status, b)
PY
}
for what in proxy:/proxy/v1.0/x fetch:/connections/c1?provider_config_key=bench; do
  name=${what%%:*}; path=${what#*:}
  load "$path" 200   # warm-up: caches, pools, lazy statics
  callgrind_control -z "$GPID" >/dev/null
  load "$path" "$N"
  callgrind_control -d "$name" "$GPID" >/dev/null
  sleep 1
  f=$(ls "$OUT"/callgrind.out.* | sort -t. -k3 -n | tail -1)
  ir=$(awk '/^totals:/ {print $2; exit}' "$f")
  echo "$LABEL $name Ir_total=$ir per_request=$(( ir / N ))" | tee -a "$OUT/summary.txt"
  cp "$f" "$OUT/$name.callgrind"
done
