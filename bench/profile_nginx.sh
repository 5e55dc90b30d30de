#!/usr/bin/env bash
# The peer's side of bench/profile.sh: user-space instructions per request of nginx `proxy_pass`
# (one process, master_process off, keepalive upstream as in peers.sh) under callgrind, for the
# same job as grantd's `/proxy/v1.0/x`: N keep-alive requests after 200 warm-up ones, to an
# nginx upstream answering `{"ok":true}`. Compare with profile.sh's `proxy` figure.
#   bench/profile_nginx.sh [N]        # default 2,000; output: bench/out/profile-nginx/
set -euo pipefail
N=${1:-2000}
OUT=$(cd "$(dirname "$0")" && pwd)/out/profile-nginx; rm -rf "$OUT"; mkdir -p "$OUT/up" "$OUT/ng"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
UP_PORT=$(free_port); NG_PORT=$(free_port)
cat >"$OUT/up/nginx.conf" <<NG
worker_processes 1; daemon off; pid $OUT/up/nginx.pid; error_log $OUT/up/error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP_PORT; location / { default_type application/json; return 200 '{"ok":true}'; } } }
NG
cat >"$OUT/ng/nginx.conf" <<NG
master_process off; daemon off; pid $OUT/ng/nginx.pid; error_log $OUT/ng/error.log;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NG_PORT;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffers 8 256k; proxy_buffer_size 16k; proxy_max_temp_file_size 0; } } }
NG
nginx -c "$OUT/up/nginx.conf" -p "$OUT/up" & PIDS+=($!)
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  nginx -c "$OUT/ng/nginx.conf" -p "$OUT/ng" >"$OUT/nginx.log" 2>&1 & NPID=$!; PIDS+=($NPID)
until curl -sf "http://127.0.0.1:$NG_PORT/v1.0/x" >/dev/null 2>&1; do sleep 0.2; done
load() {
python3 - "$NG_PORT" "$1" <<'PY'
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    c.request("GET", "/v1.0/x"); r = c.getresponse(); r.read(); assert r.status == 200
PY
}
load 200
callgrind_control -z "$NPID" >/dev/null
load "$N"
callgrind_control -d proxy "$NPID" >/dev/null
sleep 1
f=$(ls "$OUT"/callgrind.out.* | sort -t. -k3 -n | tail -1)
ir=$(awk '/^totals:/ {print $2; exit}' "$f")
echo "nginx proxy Ir_total=$ir per_request=$(( ir / N ))" | tee -a "$OUT/summary.txt"
cp "$f" "$OUT/proxy.callgrind"
