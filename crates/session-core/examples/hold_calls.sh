#!/usr/bin/env bash
# Needs sipp (Debian: apt-get install -y sip-tester) and the Rust toolchain.
#
# Memory per held call. SIPp's built-in `uac` scenario places CALLS calls at RATE per second,
# each lasting 10 minutes, against:
#   signaling  the `hold_calls` example, calls without media (the default);
#   rtp        the `hold_calls` example, an RTP endpoint (two UDP sockets) per call;
#   sipp       SIPp's own built-in `uas` scenario, for comparison.
# It prints the example's `result` lines (RSS and heap growth per established call), or
# SIPp UAS's RSS (ps) before the calls and once all CALLS are up.
#
# usage: crates/session-core/examples/hold_calls.sh [signaling|rtp|sipp]
# env:   CALLS (20000), RATE (500), PORT (5070: the UAS; the UAC uses PORT+1000),
#        RESERVE (0: the example's --reserve-calls, maps sized up front for that many calls)
# RTP needs 2 file descriptors per call: the script raises `ulimit -n` to 65536 (possible as
# root, or within the hard limit), and stops if that is not enough for CALLS.
set -euo pipefail

mode=${1:-signaling}
calls=${CALLS:-20000}
rate=${RATE:-500}
reserve=${RESERVE:-0}
port=${PORT:-5070}
uac_port=$((port + 1000))
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
target=${CARGO_TARGET_DIR:-$root/target}

command -v sipp >/dev/null || { echo "sipp is missing: apt-get install -y sip-tester" >&2; exit 1; }
case $mode in signaling | rtp | sipp) ;; *) echo "unknown mode $mode" >&2; exit 2 ;; esac

work=$(mktemp -d)
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${pids[@]}"; do
        # SIPp started with -bg is not our child: wait for it by polling its /proc entry.
        for _ in $(seq 50); do [ -e "/proc/$pid" ] || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

# Starts SIPp in the background (-bg; the parent exits with 99) and prints its pid.
sipp_bg() {
    local out pid
    out=$(cd "$work" && sipp "$@" -bg 2>&1) || true
    pid=$(echo "$out" | sed -n 's/.*PID=\[\([0-9]*\)\].*/\1/p')
    [ -n "$pid" ] || { echo "sipp did not start: $out" >&2; return 1; }
    echo "$pid"
}

# Waits up to $1 seconds until command "$2..." succeeds.
wait_until() {
    local limit=$1
    shift
    local deadline=$((SECONDS + limit))
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.5
    done
}

rss_kib() { ps -o rss= -p "$1" | tr -d ' '; }

echo "machine: $(nproc) vCPU, $(free -m | awk '/Mem:/ {print $2}') MiB, $(uname -r); sipp $(sipp -v 2>&1 | grep -o 'v[0-9.]*' | head -1)"
echo "mode=$mode calls=$calls rate=$rate reserve=$reserve"

uac() {
    sipp_bg -sn uac "127.0.0.1:$1" -i 127.0.0.1 -p "$uac_port" -r "$rate" -l "$calls" -m "$calls" \
        -d 600000 -nostdin -trace_stat -stf "$work/uac.csv" -fd 1
}

if [ "$mode" = sipp ]; then
    uas=$(sipp_bg -sn uas -i 127.0.0.1 -p "$port" -nostdin -trace_stat -stf "$work/uas.csv" -fd 1)
    pids+=("$uas")
    wait_until 10 test -s "$work/uas.csv"
    before=$(rss_kib "$uas")
    echo "sipp uas pid=$uas rss_kib_at_0=$before"
    client=$(uac "$port")
    pids+=("$client")
    # CurrentCall of the UAS's statistics (one CSV line per second).
    current() {
        awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "CurrentCall") c = i; next }
                   { v = $c } END { print v + 0 }' "$work/uas.csv"
    }
    all_up() { [ "$(current)" -ge "$calls" ]; }
    wait_until $((calls / rate + 120)) all_up || { echo "only $(current) calls up" >&2; exit 1; }
    # Same settling time as the example (the INVITE transactions' 32 s tail).
    sleep 35
    after=$(rss_kib "$uas")
    up=$(current)
    echo "sipp uas calls=$up rss_kib=$after rss_per_call_bytes=$(((after - before) * 1024 / up))"
    exit 0
fi

if [ "$mode" = rtp ]; then
    need=$((2 * calls + 200))
    ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
    if [ "$(ulimit -n)" -lt "$need" ]; then
        echo "open-files limit $(ulimit -n) < $need for $calls RTP calls: raise the hard limit (root with CAP_SYS_RESOURCE, or limits.conf) or lower CALLS (e.g. CALLS=9000)" >&2
        exit 1
    fi
    flag=--rtp
else
    flag=
fi

cargo build --release --quiet -p session-core --example hold_calls --manifest-path "$root/Cargo.toml"
"$target/release/examples/hold_calls" --port "$port" --calls "$calls" --every 1 \
    --reserve-calls "$reserve" $flag \
    </dev/null >"$work/ours.log" 2>&1 &
ours=$!
pids+=("$ours")
wait_until 30 grep -q '^listening' "$work/ours.log" || { cat "$work/ours.log" >&2; exit 1; }
grep -E '^(config|baseline)' "$work/ours.log"
client=$(uac "$port")
pids+=("$client")
finished() { ! kill -0 "$ours" 2>/dev/null; }
wait_until $((calls / rate + 180)) finished || { tail -5 "$work/ours.log" >&2; exit 1; }
grep -E '^(checkpoint|settled|result)' "$work/ours.log"
