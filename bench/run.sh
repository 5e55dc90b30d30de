#!/usr/bin/env bash
# grantd benchmark harness: one run measures everything in bench/README.md against the emulator
# (and nginx for (e)), on loopback, with the release build. Output: bench/out/<date>/ (raw wrk and
# curl output) and a summary on stdout to paste into bench/RESULTS.md.
#
#   bench/run.sh                       # SQLite; PostgreSQL too when BENCH_DATABASE_URL is set
#   BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench bench/run.sh
#
# Needs: wrk, curl, sqlite3, python3, nginx (Debian: apt-get install wrk nginx-light sqlite3).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BIN=${BENCH_BIN:-$ROOT/target/release/grantd}   # BENCH_BIN: compare another build
DUR=${BENCH_DURATION:-10s}
OUT=$ROOT/bench/out/$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$OUT"
[ -x "$BIN" ] || cargo build --release -p grantd
for t in wrk curl sqlite3 python3; do command -v $t >/dev/null || { echo "missing $t"; exit 1; }; done

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rss_kib() { awk '/VmRSS/ {print $2}' /proc/$1/status; }
hwm_kib() { awk '/VmHWM/ {print $2}' /proc/$1/status; }
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

EMU_PORT=$(free_port)
# Upload-session URLs on the emulator's own origin: grantd's SSRF guard lets `Base-Url-Override`
# reach only Graph's host, and here that is the emulator (in production they are both Microsoft's).
"$BIN" emulator --port "$EMU_PORT" --same-origin-upload-urls >"$OUT/emulator.log" 2>&1 &
PIDS+=($!)
EMU=http://127.0.0.1:$EMU_PORT
until curl -sf "$EMU/_emulator/health" >/dev/null; do sleep 0.05; done

SECRET=$(python3 -c 'import uuid; print(uuid.uuid4())')
KEYB64=$(python3 -c 'import os,base64; print(base64.b64encode(os.urandom(32)).decode())')
# App-only Graph token (client credentials in the app's home tenant after admin consent).
curl -sf "$EMU/_emulator/admin-consents" -H 'Content-Type: application/json' \
  -d '{"tenant":"fabrikam","client_id":"7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60"}' >/dev/null
TOKEN=$(curl -sf "$EMU/fabrikam.onmicrosoft.com/oauth2/v2.0/token" \
  -d grant_type=client_credentials -d client_id=7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60 \
  --data-urlencode 'client_secret=gDv8Q~emulator.dev-secret_0123456789abcdefgh' \
  --data-urlencode 'scope=https://graph.microsoft.com/.default' | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
SMALL=/v1.0/users/diego@fabrikam.onmicrosoft.com

# Starts grantd on $1 (database URL); sets GPID, GRANTD and READY_MS.
start_grantd() {
  local port; port=$(free_port)
  local t0; t0=$(date +%s%N)
  GRANTD_SECRET_KEY=$SECRET GRANTD_ENCRYPTION_KEY=$KEYB64 GRANTD_DATABASE_URL=$1 \
  GRANTD_HOST=127.0.0.1 GRANTD_PORT=$port GRANTD_MICROSOFT_LOGIN_URL=$EMU GRANTD_MICROSOFT_GRAPH_URL=$EMU \
  GRANTD_MICROSOFT_SHAREPOINT_URL="$EMU/_sharepoint/{host}" \
    "$BIN" serve >"$OUT/grantd-$port.log" 2>&1 &
  GPID=$!; PIDS+=($GPID)
  GRANTD=http://127.0.0.1:$port
  until curl -sf "$GRANTD/ready" >/dev/null 2>&1; do sleep 0.002; done
  READY_MS=$(( ($(date +%s%N) - t0) / 1000000 ))
}
stop_grantd() { kill "$GPID"; wait "$GPID" 2>/dev/null || true; }

api() { curl -sf -H "Authorization: Bearer $SECRET" -H 'Content-Type: application/json' "$@"; }
setup_connections() {
  api "$GRANTD/integrations" -d '{"provider":"one-drive","unique_key":"bench","credentials":{"type":"OAUTH2","client_id":"7e0f6a2d-3c4b-4d5e-9f8a-1b2c3d4e5f60","client_secret":"gDv8Q~emulator.dev-secret_0123456789abcdefgh","scopes":"User.Read"}}' >/dev/null
  for i in $(seq 1 10); do
    api "$GRANTD/connections" -d "{\"provider_config_key\":\"bench\",\"connection_id\":\"c$i\",\"credentials\":{\"type\":\"OAUTH2\",\"access_token\":\"$TOKEN\",\"expires_at\":\"2099-01-01T00:00:00Z\"}}" >/dev/null
  done
}
# wrk summary: "req/s p50 p99" (ms)
wrk_run() { # name conns threads url [headers...]
  local name=$1 c=$2 t=$3 url=$4; shift 4
  local hs=(); for h in "$@"; do hs+=(-H "$h"); done
  wrk -t"$t" -c"$c" -d"$DUR" --latency "${hs[@]}" "$url" >"$OUT/$name.txt" 2>&1
  python3 - "$OUT/$name.txt" <<'PY'
import re,sys
t=open(sys.argv[1]).read()
def ms(label):
    m=re.search(r'^\s*'+label+r'\s+([\d.]+)(us|ms|s)\b', t, re.M)
    if not m: return float('nan')
    v=float(m.group(1)); return v/1000 if m.group(2)=='us' else v*1000 if m.group(2)=='s' else v
rps=float(re.search(r'Requests/sec:\s+([\d.]+)', t).group(1))
errs=re.search(r'Non-2xx or 3xx responses:\s+(\d+)', t)
print(f"{rps:.0f} {ms('50%'):.3f} {ms('99%'):.3f} {errs.group(1) if errs else 0}")
PY
}
PROXY_H=("Authorization: Bearer $SECRET" "Provider-Config-Key: bench" "Connection-Id: c1")

echo "# grantd bench $(date -u +%FT%TZ) on $(nproc) cores: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)" | tee "$OUT/summary.txt"
say() { echo "$*" | tee -a "$OUT/summary.txt"; }

# (d) start to ready, idle RSS (SQLite)
DB=$OUT/grantd.db
start_grantd "sqlite://$DB?mode=rwc"
say "d ready_ms_sqlite $READY_MS"
say "d idle_rss_kib $(rss_kib $GPID)"
setup_connections

# (a) small JSON GET: direct vs proxy
read -r d32 _ _ de <<<"$(wrk_run a_direct_c32 32 2 "$EMU$SMALL" "Authorization: Bearer $TOKEN")"
read -r p32 _ _ pe <<<"$(wrk_run a_proxy_c32 32 2 "$GRANTD/proxy$SMALL" "${PROXY_H[@]}")"
say "a c32 direct_rps $d32 proxy_rps $p32 ratio $(python3 -c "print(round($p32/$d32,3))") non2xx $de/$pe"
say "d loaded_rss_kib $(rss_kib $GPID) (after the c=32 proxy run)"
read -r _ d50 d99 _ <<<"$(wrk_run a_direct_c1 1 1 "$EMU$SMALL" "Authorization: Bearer $TOKEN")"
read -r _ p50 p99 _ <<<"$(wrk_run a_proxy_c1 1 1 "$GRANTD/proxy$SMALL" "${PROXY_H[@]}")"
say "a c1 direct_p50_ms $d50 p99 $d99 proxy_p50_ms $p50 p99 $p99 added_p50_ms $(python3 -c "print(round($p50-$d50,3))")"

# (b) credential fetch with 10 connections, then 100,000
conn_bench() { # label
  read -r r50 _ r99 e <<<"$(wrk_run "b_$1" 32 2 "$GRANTD/connections/c1?provider_config_key=bench" "Authorization: Bearer $SECRET")"
  say "b $1 c32 rps $r50 p99_ms $r99 non2xx $e"
}
conn_bench sqlite_10
# 100k rows copied from c1 (same sealed credentials), in one SQL statement.
sqlite3 "$DB" "WITH RECURSIVE n(i) AS (SELECT 11 UNION ALL SELECT i+1 FROM n WHERE i < 100000)
  INSERT INTO connections (connection_id, provider_config_key, provider, credentials, credentials_key_id, expires_at,
    connection_config, metadata, end_user, end_user_id, end_user_organization_id, search_text, tags, webhook_url_override,
    auth_failure, version, last_fetched_at, last_refreshed_at, created_at, updated_at, deleted_at)
  SELECT 'c'||i, provider_config_key, provider, credentials, credentials_key_id, expires_at, connection_config, metadata,
    end_user, end_user_id, end_user_organization_id, 'c'||i, tags, webhook_url_override, auth_failure, version,
    last_fetched_at, last_refreshed_at, created_at, updated_at, deleted_at FROM connections, n WHERE connection_id='c1';"
say "b sqlite rows $(sqlite3 "$DB" 'SELECT count(*) FROM connections')"
conn_bench sqlite_100k
stop_grantd

if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  psql "$BENCH_DATABASE_URL" -qc 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;' >/dev/null
  start_grantd "$BENCH_DATABASE_URL"
  say "d ready_ms_postgres $READY_MS"
  setup_connections
  conn_bench postgres_10
  psql "$BENCH_DATABASE_URL" -qc "INSERT INTO connections (connection_id, provider_config_key, provider, credentials, credentials_key_id, expires_at,
    connection_config, metadata, end_user, end_user_id, end_user_organization_id, search_text, tags, webhook_url_override,
    auth_failure, version, last_fetched_at, last_refreshed_at, created_at, updated_at, deleted_at)
    SELECT 'c'||i, provider_config_key, provider, credentials, credentials_key_id, expires_at, connection_config, metadata,
    end_user, end_user_id, end_user_organization_id, 'c'||i, tags, webhook_url_override, auth_failure, version,
    last_fetched_at, last_refreshed_at, created_at, updated_at, deleted_at
    FROM connections, generate_series(11, 100000) i WHERE connection_id='c1'; ANALYZE connections;" >/dev/null
  conn_bench postgres_100k
  stop_grantd
fi

# (c) 1 GiB download through the proxy vs direct; grantd's peak RSS growth.
start_grantd "sqlite://$DB?mode=rwc"
BIG=/v1.0/users/diego@fabrikam.onmicrosoft.com/drive/root:/big.bin:/content
# Big transfers swing with whatever else the 2 cores do: $REPS alternating direct/proxy rounds,
# medians compared (every round is in the summary).
REPS=${BENCH_TRANSFER_REPS:-3}
median() { python3 -c "import statistics,sys; print(round(statistics.median(map(float, sys.argv[1:]))))" "$@"; }
h0=$(hwm_kib $GPID)
DTS=(); PTS=()
for _ in $(seq 1 "$REPS"); do
  DTS+=($(curl -sf -L -o /dev/null -w '%{speed_download}' -H "Authorization: Bearer $TOKEN" "$EMU$BIG" | python3 -c 'import sys; print(round(float(sys.stdin.read())/1e6))'))
  PTS+=($(curl -sf -o /dev/null -w '%{speed_download}' "${PROXY_H[@]/#/-H}" -H 'Grantd-Follow-Redirects: true' "$GRANTD/proxy$BIG" 2>/dev/null | python3 -c 'import sys; print(round(float(sys.stdin.read() or 0)/1e6))'))
done
dt=$(median "${DTS[@]}"); pt=$(median "${PTS[@]}")
say "c download_1gib direct_MBps $dt proxy_MBps $pt ratio $(python3 -c "print(round($pt/max($dt,1),3))") grantd_peak_rss_growth_kib $(( $(hwm_kib $GPID) - h0 )) (medians of direct ${DTS[*]} / proxy ${PTS[*]})"
# (c) 1 GiB upload session (10 MiB fragments) direct vs through the proxy, with a delegated token
# for diego (the app's application permissions are read-only) imported as connection u1.
UTOKEN=$(python3 bench/upload.py token "$EMU")
api "$GRANTD/connections" -d "{\"provider_config_key\":\"bench\",\"connection_id\":\"u1\",\"credentials\":{\"type\":\"OAUTH2\",\"access_token\":\"$UTOKEN\",\"expires_at\":\"2099-01-01T00:00:00Z\"}}" >/dev/null
h0=$(hwm_kib $GPID)
DUS=(); PUS=()
for _ in $(seq 1 "$REPS"); do
  DUS+=($(python3 bench/upload.py direct "$EMU" "$UTOKEN"))
  PUS+=($(python3 bench/upload.py proxy "$GRANTD" "$SECRET" bench u1))
done
du=$(median "${DUS[@]}"); pu=$(median "${PUS[@]}")
say "c upload_1gib direct_MBps $du proxy_MBps $pu ratio $(python3 -c "print(round($pu/max($du,1),3))") grantd_peak_rss_growth_kib $(( $(hwm_kib $GPID) - h0 )) (medians of direct ${DUS[*]} / proxy ${PUS[*]})"

# (e) small requests against nginx as the upstream (Base-Url-Override to an allowed host).
if command -v nginx >/dev/null; then
  NG_PORT=$(free_port); NGDIR=$OUT/nginx; mkdir -p "$NGDIR"
  cat >"$NGDIR/nginx.conf" <<NG
worker_processes 1; daemon off; pid $NGDIR/nginx.pid; error_log $NGDIR/error.log;
events { worker_connections 1024; }
http { access_log off; server { listen 127.0.0.1:$NG_PORT; location / { default_type application/json; return 200 '{"ok":true}'; } } }
NG
  nginx -c "$NGDIR/nginx.conf" -p "$NGDIR" &
  PIDS+=($!)
  until curl -sf "http://127.0.0.1:$NG_PORT/" >/dev/null; do sleep 0.05; done
  stop_grantd
  # nginx is reached as localhost: trusted by pointing the Graph URL at it for this run.
  EMU_SAVED=$EMU; EMU=http://127.0.0.1:$NG_PORT
  start_grantd "sqlite://$DB?mode=rwc"
  EMU=$EMU_SAVED
  read -r n32 _ _ _ <<<"$(wrk_run e_nginx_direct_c32 32 2 "http://127.0.0.1:$NG_PORT/v1.0/x")"
  read -r q32 _ _ qe <<<"$(wrk_run e_nginx_proxy_c32 32 2 "$GRANTD/proxy/v1.0/x" "${PROXY_H[@]}")"
  read -r _ n50 _ _ <<<"$(wrk_run e_nginx_direct_c1 1 1 "http://127.0.0.1:$NG_PORT/v1.0/x")"
  read -r _ q50 q99 _ <<<"$(wrk_run e_nginx_proxy_c1 1 1 "$GRANTD/proxy/v1.0/x" "${PROXY_H[@]}")"
  say "e nginx c32 direct_rps $n32 proxy_rps $q32 ratio $(python3 -c "print(round($q32/$n32,3))") non2xx $qe; c1 direct_p50_ms $n50 proxy_p50_ms $q50 p99 $q99 added_p50_ms $(python3 -c "print(round($q50-$n50,3))")"
  say "d loaded_rss_kib_nginx_run $(rss_kib $GPID)"
fi
echo "raw output in $OUT"
