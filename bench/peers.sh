#!/usr/bin/env bash
# grantd next to its peer, nginx, in one run: the same upstream reached directly, through nginx
# `proxy_pass` and through grantd's `/proxy`, for small JSON (wrk, c=32 req/s and c=1 p50) and a
# 1 GiB download (curl), in alternating rounds; plus grantd's credential fetch at c=32 and its
# idle / loaded / peak RSS. Output: bench/out/peers-<date>/ (raw) and a summary on stdout.
#
#   bench/peers.sh [BIN] [ROUNDS]      # BIN defaults to target/release/grantd, ROUNDS to 3
#   BENCH_DURATION=10s                 # wrk duration per measurement
#   BENCH_BASE_BIN=path/to/grantd      # optional: another build as a fourth column ("base"),
#                                      # measured in the same rounds (before/after a change)
#
# Upstream: one nginx worker answering `{"ok":true}` (application/json) on /v1.0/x and serving a
# 1 GiB file on /big.bin. Peer: a second nginx, one worker, `proxy_pass` to the upstream through
# an `upstream` block with `keepalive` (HTTP/1.1, Connection cleared), buffering in memory only.
# grantd: `serve` on SQLite with the Graph URL pointed at the upstream and a connection whose
# token never expires. Needs wrk, curl, nginx, python3 (Debian: apt-get install wrk nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${1:-$ROOT/target/release/grantd}
BASE_BIN=${BENCH_BASE_BIN:-}
ROUNDS=${2:-3}
DUR=${BENCH_DURATION:-10s}
OUT=$ROOT/bench/out/peers-$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
for t in wrk curl nginx python3; do command -v $t >/dev/null || { echo "missing $t"; exit 1; }; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
hwm_kib() { awk '/VmHWM/ {print $2}' /proc/$1/status; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

UP_PORT=$(free_port); NG_PORT=$(free_port); G_PORT=$(free_port); B_PORT=$(free_port)
truncate -s 1G "$OUT/big.bin"   # sparse: served from the page cache, no disk reads
mkdir -p "$OUT/up" "$OUT/ng"
cat >"$OUT/up/nginx.conf" <<NG
worker_processes 1; daemon off; pid $OUT/up/nginx.pid; error_log $OUT/up/error.log;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
  server {
    listen 127.0.0.1:$UP_PORT;
    location / { default_type application/json; return 200 '{"ok":true}'; }
    location = /big.bin { alias $OUT/big.bin; default_type application/octet-stream; sendfile on; }
  }
}
NG
cat >"$OUT/ng/nginx.conf" <<NG
worker_processes 1; daemon off; pid $OUT/ng/nginx.pid; error_log $OUT/ng/error.log;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000;
  upstream up { server 127.0.0.1:$UP_PORT; keepalive 64; keepalive_requests 1000000; }
  server {
    listen 127.0.0.1:$NG_PORT;
    location / {
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_buffers 8 256k; proxy_buffer_size 16k; proxy_max_temp_file_size 0;
    }
  }
}
NG
nginx -c "$OUT/up/nginx.conf" -p "$OUT/up" 2>"$OUT/up/stderr" & PIDS+=($!)
nginx -c "$OUT/ng/nginx.conf" -p "$OUT/ng" 2>"$OUT/ng/stderr" & PIDS+=($!)
UP=http://127.0.0.1:$UP_PORT; NG=http://127.0.0.1:$NG_PORT; G=http://127.0.0.1:$G_PORT; B=http://127.0.0.1:$B_PORT
until curl -sf "$UP/v1.0/x" >/dev/null && curl -sf "$NG/v1.0/x" >/dev/null; do sleep 0.05; done

SECRET=$(python3 -c 'import uuid; print(uuid.uuid4())')
KEYB64=$(python3 -c 'import os,base64; print(base64.b64encode(os.urandom(32)).decode())')
api() { curl -sf -H "Authorization: Bearer $SECRET" -H 'Content-Type: application/json' "$@"; }
start_grantd() { # bin port label -> sets LAST_PID, prints idle RSS
  GRANTD_SECRET_KEY=$SECRET GRANTD_ENCRYPTION_KEY=$KEYB64 GRANTD_DATABASE_URL="sqlite://$OUT/$3.db?mode=rwc" \
  GRANTD_HOST=127.0.0.1 GRANTD_PORT=$2 GRANTD_MICROSOFT_LOGIN_URL=$UP GRANTD_MICROSOFT_GRAPH_URL=$UP \
  GRANTD_MICROSOFT_SHAREPOINT_URL="$UP/_sharepoint/{host}" \
    "$1" serve >"$OUT/$3.log" 2>&1 &
  LAST_PID=$!; PIDS+=($LAST_PID)
  local g=http://127.0.0.1:$2
  until curl -sf "$g/ready" >/dev/null 2>&1; do sleep 0.01; done
  sleep 1   # idle means idle: let start-up work settle before reading RSS
  api "$g/integrations" -d '{"provider":"one-drive","unique_key":"bench","credentials":{"type":"OAUTH2","client_id":"7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60","client_secret":"gDv8Q~emulator.dev-secret_0123456789abcdefgh","scopes":"User.Read"}}' >/dev/null
  api "$g/connections" -d '{"provider_config_key":"bench","connection_id":"c1","credentials":{"type":"OAUTH2","access_token":"bench-token","expires_at":"2099-01-01T00:00:00Z"}}' >/dev/null
}
start_grantd "$BIN" "$G_PORT" grantd; GPID=$LAST_PID
IDLE_RSS=$(rss_kib $GPID)
if [ -n "$BASE_BIN" ]; then start_grantd "$BASE_BIN" "$B_PORT" base; BPID=$LAST_PID; BASE_IDLE_RSS=$(rss_kib $BPID); fi
PROXY_H=("Authorization: Bearer $SECRET" "Provider-Config-Key: bench" "Connection-Id: c1")

# wrk summary: "req/s p50_us non2xx"
wrk_run() { # name conns threads url [headers...]
  local name=$1 c=$2 t=$3 url=$4; shift 4
  local hs=(); for h in "$@"; do hs+=(-H "$h"); done
  wrk -t"$t" -c"$c" -d"$DUR" --latency "${hs[@]}" "$url" >"$OUT/$name.txt" 2>&1
  python3 - "$OUT/$name.txt" <<'PY'
import re,sys
t=open(sys.argv[1]).read()
m=re.search(r'^\s*50%\s+([\d.]+)(us|ms|s)\b', t, re.M)
v=float(m.group(1)); us=v if m.group(2)=='us' else v*1000 if m.group(2)=='ms' else v*1e6
rps=float(re.search(r'Requests/sec:\s+([\d.]+)', t).group(1))
errs=re.search(r'Non-2xx or 3xx responses:\s+(\d+)', t)
print(f"{rps:.0f} {us:.0f} {errs.group(1) if errs else 0}")
PY
}
dl() { # url [headers...] -> MB/s
  local url=$1; shift; local hs=(); for h in "$@"; do hs+=(-H "$h"); done
  curl -sf -o /dev/null -w '%{speed_download}' "${hs[@]}" "$url" | python3 -c 'import sys; print(round(float(sys.stdin.read())/1e6))'
}
say() { echo "$*" | tee -a "$OUT/summary.txt"; }
say "# peers $(date -u +%FT%TZ) on $(nproc) cores, bin $BIN, $ROUNDS rounds of $DUR, load $(cut -d' ' -f1-3 /proc/loadavg)"
say "grantd idle_rss_kib $IDLE_RSS${BASE_BIN:+ base ($BASE_BIN) idle_rss_kib $BASE_IDLE_RSS}"

# Warm every path (pools, caches) before measuring.
for u in "$UP/v1.0/x" "$NG/v1.0/x"; do curl -sf "$u" >/dev/null; done
curl -sf "${PROXY_H[@]/#/-H}" "$G/proxy/v1.0/x" >/dev/null
[ -z "$BASE_BIN" ] || curl -sf "${PROXY_H[@]/#/-H}" "$B/proxy/v1.0/x" >/dev/null

for r in $(seq 1 "$ROUNDS"); do
  read -r d32 _ de <<<"$(wrk_run r${r}_direct_c32 32 2 "$UP/v1.0/x")"
  read -r n32 _ ne <<<"$(wrk_run r${r}_nginx_c32 32 2 "$NG/v1.0/x")"
  read -r g32 _ ge <<<"$(wrk_run r${r}_grantd_c32 32 2 "$G/proxy/v1.0/x" "${PROXY_H[@]}")"
  read -r _ d1 _ <<<"$(wrk_run r${r}_direct_c1 1 1 "$UP/v1.0/x")"
  read -r _ n1 _ <<<"$(wrk_run r${r}_nginx_c1 1 1 "$NG/v1.0/x")"
  read -r _ g1 _ <<<"$(wrk_run r${r}_grantd_c1 1 1 "$G/proxy/v1.0/x" "${PROXY_H[@]}")"
  if [ -n "$BASE_BIN" ]; then
    read -r b32 _ be <<<"$(wrk_run r${r}_base_c32 32 2 "$B/proxy/v1.0/x" "${PROXY_H[@]}")"
    read -r _ b1 _ <<<"$(wrk_run r${r}_base_c1 1 1 "$B/proxy/v1.0/x" "${PROXY_H[@]}")"
    python3 -c "import sys; d,n,b,d1,n1,b1=map(float,sys.argv[1:7]); print(f'json round $r base c32 req/s {b:.0f} base/nginx {b/n:.3f} base/direct {b/d:.3f} | c1 p50_us {b1:.0f} (+{b1-d1:.0f}) added base/nginx {(b1-d1)/max(n1-d1,1):.2f} | non2xx $be')" \
      "$d32" "$n32" "$b32" "$d1" "$n1" "$b1" | tee -a "$OUT/summary.txt"
  fi
  python3 - "$r" "$d32" "$n32" "$g32" "$d1" "$n1" "$g1" "$de/$ne/$ge" <<'PY' | tee -a "$OUT/summary.txt"
import sys
r,d,n,g,d1,n1,g1,errs=sys.argv[1],*map(float,sys.argv[2:8]),sys.argv[8]
print(f"json round {r} c32 req/s direct {d:.0f} nginx {n:.0f} grantd {g:.0f} | grantd/nginx {g/n:.3f} grantd/direct {g/d:.3f} nginx/direct {n/d:.3f} | non2xx {errs}")
print(f"json round {r} c1 p50_us direct {d1:.0f} nginx {n1:.0f} (+{n1-d1:.0f}) grantd {g1:.0f} (+{g1-d1:.0f}) | added grantd/nginx {(g1-d1)/max(n1-d1,1):.2f}")
PY
done
say "grantd loaded_rss_kib $(rss_kib $GPID) (after the c=32 runs)"

read -r f32 _ fe <<<"$(wrk_run fetch_c32 32 2 "$G/connections/c1?provider_config_key=bench" "Authorization: Bearer $SECRET")"
say "fetch c32 req/s $f32 non2xx $fe"
if [ -n "$BASE_BIN" ]; then
  say "base loaded_rss_kib $(rss_kib $BPID)"
  read -r f32 _ fe <<<"$(wrk_run base_fetch_c32 32 2 "$B/connections/c1?provider_config_key=bench" "Authorization: Bearer $SECRET")"
  say "base fetch c32 req/s $f32 non2xx $fe"
  kill "$BPID"   # the downloads compare grantd with the peers only
fi

curl -sf -o /dev/null "$UP/big.bin"   # first read fills the page cache (a sparse file's zero pages)
h0=$(hwm_kib $GPID)
for r in $(seq 1 "$ROUNDS"); do
  dd=$(dl "$UP/big.bin"); dn=$(dl "$NG/big.bin"); dg=$(dl "$G/proxy/big.bin" "${PROXY_H[@]}")
  say "download_1gib round $r MB/s direct $dd nginx $dn grantd $dg | grantd/nginx $(python3 -c "print(round($dg/max($dn,1),3))") grantd/direct $(python3 -c "print(round($dg/max($dd,1),3))")"
done
say "download grantd peak_rss_kib $(hwm_kib $GPID) growth_kib $(( $(hwm_kib $GPID) - h0 ))"
rm -f "$OUT/big.bin"
echo "raw output in $OUT"
