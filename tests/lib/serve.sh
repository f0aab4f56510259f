# Start and stop a `fieldwatch serve` for shell tests. Source it, then:
#
#   trap fw_stop EXIT
#   fw_start            # sets FW_GRPC (host:port), FW_GRPC_URL, FW_HTTP_URL
#
# The binary is $FIELDWATCH_BIN, else $CARGO_TARGET_DIR/debug/fieldwatch
# (else target/debug/fieldwatch): build it first (`cargo build`). The server
# binds port 0 on loopback (no port races) and gets a fresh data directory;
# fw_start waits for its `fieldwatch ready:` line, at most
# $FW_START_TIMEOUT seconds (default 120). fw_stop sends SIGTERM, waits up to
# 30 s, then SIGKILL, and removes the data directory; it is safe to call
# twice and when nothing was started.

FW_PID=""
FW_DIR=""

fw_bin() {
    if [[ -n "${FIELDWATCH_BIN:-}" ]]; then
        echo "$FIELDWATCH_BIN"
    else
        echo "${CARGO_TARGET_DIR:-target}/debug/fieldwatch"
    fi
}

fw_start() {
    local bin
    bin=$(fw_bin)
    if [[ ! -x "$bin" ]]; then
        echo "error: $bin not found: run cargo build first (or set FIELDWATCH_BIN)" >&2
        return 1
    fi
    FW_DIR=$(mktemp -d "${TMPDIR:-/tmp}/fieldwatch-test.XXXXXX")
    : >"$FW_DIR/stdout"
    NO_COLOR=1 "$bin" serve --grpc-addr 127.0.0.1:0 --http-addr 127.0.0.1:0 --data-dir "$FW_DIR/data" \
        >"$FW_DIR/stdout" 2>"$FW_DIR/stderr" </dev/null &
    FW_PID=$!
    local deadline=$((SECONDS + ${FW_START_TIMEOUT:-120}))
    local line=""
    while ((SECONDS < deadline)); do
        line=$(grep -m1 '^fieldwatch ready:' "$FW_DIR/stdout" || true)
        [[ -n "$line" ]] && break
        if ! kill -0 "$FW_PID" 2>/dev/null; then
            echo "error: fieldwatch serve exited before it was ready; its stderr:" >&2
            tail -n 30 "$FW_DIR/stderr" >&2
            FW_PID=""
            return 1
        fi
        sleep 0.2
    done
    if [[ -z "$line" ]]; then
        echo "error: fieldwatch serve not ready after ${FW_START_TIMEOUT:-120}s; its stderr:" >&2
        tail -n 30 "$FW_DIR/stderr" >&2
        return 1
    fi
    echo "$line"
    FW_GRPC_URL=$(sed -E 's/.* grpc=([^ ]+).*/\1/' <<<"$line")
    FW_HTTP_URL=$(sed -E 's/.* http=([^ ]+).*/\1/' <<<"$line")
    FW_GRPC=${FW_GRPC_URL#http://}
    export FW_GRPC FW_GRPC_URL FW_HTTP_URL
}

fw_stop() {
    local rc=$?
    if ((rc != 0)) && [[ -n "$FW_DIR" && -s "$FW_DIR/stderr" ]]; then
        echo "--- last lines of fieldwatch serve's stderr ---" >&2
        tail -n 20 "$FW_DIR/stderr" >&2
    fi
    if [[ -n "$FW_PID" ]] && kill -0 "$FW_PID" 2>/dev/null; then
        kill -TERM "$FW_PID" 2>/dev/null || true
        local i
        for ((i = 0; i < 300; i++)); do
            kill -0 "$FW_PID" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$FW_PID" 2>/dev/null; then
            echo "warning: fieldwatch serve did not stop in 30s; killing it" >&2
            kill -KILL "$FW_PID" 2>/dev/null || true
        fi
        wait "$FW_PID" 2>/dev/null || true
    fi
    FW_PID=""
    if [[ -n "$FW_DIR" ]]; then
        rm -rf "$FW_DIR"
        FW_DIR=""
    fi
}

# Prints the body of GET $FW_HTTP_URL$1 (python3: curl may be missing).
fw_get() {
    python3 -c 'import sys, urllib.request
sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode())' "$FW_HTTP_URL$1"
}

# Prints the number of interviews the aggregator has counted (all forms).
fw_interviews() {
    fw_get /metrics |
        awk '/^fieldwatch_interviews\{/ { n += $NF } END { printf "%d\n", n }'
}

# Waits until the aggregator has counted $1 interviews (at most $2 s, default 120).
fw_wait_interviews() {
    local want=$1 deadline=$((SECONDS + ${2:-120})) got=0
    while ((SECONDS < deadline)); do
        got=$(fw_interviews || echo 0)
        ((got == want)) && return 0
        sleep 0.5
    done
    echo "error: the aggregator counted $got interviews, expected $want" >&2
    return 1
}
