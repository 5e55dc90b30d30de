#!/usr/bin/env bash
# Kernel work per proxied request, grantd next to nginx `proxy_pass` (the set-up of peers.sh:
# one nginx worker as the upstream answering `{"ok":true}`, a second nginx worker proxying to it
# with keepalive, grantd `serve` on SQLite). For each proxy and concurrency (c=1, c=32) a `wrk`
# run of BENCH_DURATION is watched by `perf stat -p` on the proxy's process only (all its
# threads): syscalls by kind, context switches, CPU migrations, and user/system CPU time (from
# /proc/PID/stat), each divided by the requests wrk completed. Counts, unlike req/s, barely move
# with the machine's load. Needs perf (tracepoints `syscalls:*`, `raw_syscalls:*`: root), wrk,
# curl, nginx, python3.
#
#   bench/syscalls.sh [BIN] [LABEL]     # BIN defaults to target/release/grantd
#   BENCH_DURATION=5s                   # wrk duration per measurement
#   GRANTD_ENV="TOKIO_WORKER_THREADS=1" # extra environment for grantd (runtime shape trials)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${1:-$ROOT/target/release/grantd}
LABEL=${2:-run}
DUR=${BENCH_DURATION:-5s}
OUT=$ROOT/bench/out/syscalls-$LABEL-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT/up" "$OUT/ng"
for t in wrk curl nginx python3 perf; do command -v $t >/dev/null || { echo "missing $t"; exit 1; }; done
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

UP_PORT=$(free_port); NG_PORT=$(free_port); G_PORT=$(free_port)
cat >"$OUT/up/nginx.conf" <<NG
worker_processes 1; daemon off; pid $OUT/up/nginx.pid; error_log $OUT/up/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$UP_PORT; location / { default_type application/json; return 200 '{"ok":true}'; } } }
NG
cat >"$OUT/ng/nginx.conf" <<NG
worker_processes 1; daemon off; pid $OUT/ng/nginx.pid; error_log $OUT/ng/error.log;
events { worker_connections 4096; }
http { access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NG_PORT;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffers 8 256k; proxy_buffer_size 16k; proxy_max_temp_file_size 0; } } }
NG
nginx -c "$OUT/up/nginx.conf" -p "$OUT/up" 2>"$OUT/up/stderr" & PIDS+=($!)
nginx -c "$OUT/ng/nginx.conf" -p "$OUT/ng" 2>"$OUT/ng/stderr" & NG_MASTER=$!; PIDS+=($NG_MASTER)
UP=http://127.0.0.1:$UP_PORT; NG=http://127.0.0.1:$NG_PORT; G=http://127.0.0.1:$G_PORT
until curl -sf "$UP/v1.0/x" >/dev/null && curl -sf "$NG/v1.0/x" >/dev/null; do sleep 0.05; done
NG_WORKER=$(pgrep -P "$NG_MASTER" | head -1)

SECRET=$(python3 -c 'import uuid; print(uuid.uuid4())')
KEYB64=$(python3 -c 'import os,base64; print(base64.b64encode(os.urandom(32)).decode())')
env ${GRANTD_ENV:-} GRANTD_SECRET_KEY=$SECRET GRANTD_ENCRYPTION_KEY=$KEYB64 \
  GRANTD_DATABASE_URL="sqlite://$OUT/g.db?mode=rwc" GRANTD_HOST=127.0.0.1 GRANTD_PORT=$G_PORT \
  GRANTD_MICROSOFT_LOGIN_URL=$UP GRANTD_MICROSOFT_GRAPH_URL=$UP \
  GRANTD_MICROSOFT_SHAREPOINT_URL="$UP/_sharepoint/{host}" "$BIN" serve >"$OUT/grantd.log" 2>&1 &
GPID=$!; PIDS+=($GPID)
until curl -sf "$G/ready" >/dev/null 2>&1; do sleep 0.01; done
api() { curl -sf -H "Authorization: Bearer $SECRET" -H 'Content-Type: application/json' "$@"; }
api "$G/integrations" -d '{"provider":"one-drive","unique_key":"bench","credentials":{"type":"OAUTH2","client_id":"7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60","client_secret":"gDv8Q~emulator.dev-secret_0123456789abcdefgh","scopes":"User.Read"}}' >/dev/null
api "$G/connections" -d '{"provider_config_key":"bench","connection_id":"c1","credentials":{"type":"OAUTH2","access_token":"bench-token","expires_at":"2099-01-01T00:00:00Z"}}' >/dev/null
PH=(-H "Authorization: Bearer $SECRET" -H "Provider-Config-Key: bench" -H "Connection-Id: c1")

EVENTS=raw_syscalls:sys_enter,context-switches,cpu-migrations
for s in read recvfrom readv write writev sendto sendmsg recvmsg epoll_wait epoll_pwait futex sched_yield epoll_ctl; do
  EVENTS+=",syscalls:sys_enter_$s"
done
ticks() { awk '{print $14, $15}' /proc/$1/stat; }   # utime stime (clock ticks)
HZ=$(getconf CLK_TCK)
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
say "# syscalls $(date -u +%FT%TZ) bin $BIN label $LABEL ${GRANTD_ENV:+env $GRANTD_ENV} dur $DUR load $(cut -d' ' -f1-3 /proc/loadavg)"

measure() { # name pid conns url [curl/wrk header args...]
  local name=$1 pid=$2 c=$3 url=$4; shift 4
  local t=$(( c > 1 ? 2 : 1 ))
  wrk -t1 -c"$c" -d1s "$@" "$url" >/dev/null 2>&1   # warm pools and threads
  read -r u0 s0 <<<"$(ticks "$pid")"
  perf stat -x, -o "$OUT/$name-c$c.perf" -e "$EVENTS" -p "$pid" -- \
    wrk -t"$t" -c"$c" -d"$DUR" "$@" "$url" >"$OUT/$name-c$c.wrk" 2>&1
  read -r u1 s1 <<<"$(ticks "$pid")"
  python3 - "$OUT/$name-c$c.wrk" "$OUT/$name-c$c.perf" "$name" "$c" $((u1-u0)) $((s1-s0)) "$HZ" <<'PY' | tee -a "$OUT/summary.txt"
import re, sys
wrk, perf, name, c, du, ds, hz = sys.argv[1:8]
t = open(wrk).read()
n = int(re.search(r'(\d+) requests in', t).group(1))
rps = float(re.search(r'Requests/sec:\s+([\d.]+)', t).group(1))
non2xx = re.search(r'Non-2xx or 3xx responses:\s+(\d+)', t)
counts = {}
for line in open(perf):
    f = line.strip().split(',')
    if len(f) > 2 and f[0].replace('.', '').isdigit():
        counts[f[2].split(':')[-1].replace('sys_enter_', '')] = float(f[0])
per = lambda k: counts.get(k, 0) / n
kinds = ' '.join(f"{k}={per(k):.2f}" for k in
    ['read','recvfrom','readv','write','writev','sendto','sendmsg','recvmsg','epoll_wait','epoll_pwait','futex','sched_yield','epoll_ctl'] if counts.get(k))
us = lambda ticks: int(ticks) * 1e6 / int(hz) / n
print(f"{name} c={c} requests {n} ({rps:.0f}/s{', non2xx ' + non2xx.group(1) if non2xx else ''}) | per request: "
      f"syscalls {per('sys_enter'):.2f} ctx_switches {per('context-switches'):.2f} migrations {per('cpu-migrations'):.3f} "
      f"cpu_us user {us(du):.1f} sys {us(ds):.1f} | {kinds}")
PY
}
for c in 1 32; do
  measure nginx "$NG_WORKER" "$c" "$NG/v1.0/x"
  measure grantd "$GPID" "$c" "$G/proxy/v1.0/x" "${PH[@]}"
done
echo "raw output in $OUT"
