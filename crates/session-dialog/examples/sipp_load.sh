#!/usr/bin/env bash
# SIPp load on loopback: our driver (the `responder` example, release build) side by side with
# SIPp's own UAS (`sipp -sn uas`), both driven by SIPp's built-in `uac` scenario over UDP.
#
#   cargo build --release -p session-dialog --example responder
#   crates/session-dialog/examples/sipp_load.sh                 # rates 200 500 1000 2000 3000 4000
#   crates/session-dialog/examples/sipp_load.sh 3000 4000 5000  # chosen rates
#
# Environment: SECONDS_PER_RUN (10: -m = rate × this), RESPONDER (the binary), OUT (a directory
# for SIPp's logs; a new one under /tmp otherwise), BASE_PORT (15080), KEEP_GOING=1 (do not stop
# raising the rate once a server is no longer clean).
#
# At each rate both servers get a fresh process and one SIPp client run each, the order
# alternating from rate to rate so that noise hits both alike. A run is clean when SIPp reports
# Failed call = 0 and the Retrans column of its scenario screen (INVITE/BYE retransmitted by the
# client, 180/200 retransmitted by the server) sums to 0. Server CPU is utime + stime of the
# server process from /proc/PID/stat, read just before and just after the client run.
# Loopback only; every SIPp run is bounded by `timeout`; the trap kills the servers it started.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
RESPONDER=${RESPONDER:-$ROOT/target/release/examples/responder}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
BASE_PORT=${BASE_PORT:-15080}
KEEP_GOING=${KEEP_GOING:-0}
OUT=${OUT:-$(mktemp -d /tmp/sipp-load.XXXXXX)}
mkdir -p "$OUT"
if [ $# -gt 0 ]; then RATES=("$@"); else RATES=(200 500 1000 2000 3000 4000); fi

OURS_PORT=$BASE_PORT
THEIRS_PORT=$((BASE_PORT + 1))
CLIENT_PORT=$((BASE_PORT + 10))
HZ=$(getconf CLK_TCK)

[ -x "$RESPONDER" ] || { echo "no $RESPONDER: cargo build --release -p session-dialog --example responder" >&2; exit 1; }
command -v sipp >/dev/null || { echo "sipp is missing (apt-get install -y sip-tester)" >&2; exit 1; }

SERVER_PID=""
cleanup() {
    if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT INT TERM

# utime + stime of a process, in clock ticks (fields 14 and 15, counted after the ")").
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'; }

# Waits until something listens on UDP port $1 (at most 5 s).
wait_udp() {
    for _ in $(seq 50); do
        ss -Hlun "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    echo "nothing listens on UDP $1" >&2
    return 1
}

start_server() { # $1 = ours|theirs, $2 = log file; sets SERVER_PID and PORT
    case $1 in
    ours)
        PORT=$OURS_PORT
        "$RESPONDER" "127.0.0.1:$PORT" >"$2" 2>&1 &
        ;;
    theirs)
        PORT=$THEIRS_PORT
        # -bg is not used so that $! is the process whose CPU is read; its screen goes to $2.
        (cd "$OUT" && exec sipp -sn uas -i 127.0.0.1 -p "$PORT" -nostdin) >"$2" 2>&1 &
        ;;
    esac
    SERVER_PID=$!
    wait_udp "$PORT"
    sleep 0.5
}

# Sum of the Retrans column of the scenario screen at exit (message rows only).
retrans() {
    awk '/(---------->|<----------)/ {
            a = 0; n = 0
            for (i = 1; i <= NF; i++) {
                if ($i ~ /^(---------->|<----------)$/) { a = 1; continue }
                if (a && $i ~ /^[0-9]+$/) { n++; if (n == 2) { s += $i; break } }
            }
         } END { print s + 0 }' "$1"
}

# System-wide UDP receive-buffer drops (RcvbufErrors in /proc/net/snmp): loopback is all there is
# in these runs, so a rise means a socket (client's or server's) overflowed.
rcvbuf_errors() {
    awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) if ($i == "RcvbufErrors") c = i; h = 1 } else print $c }' /proc/net/snmp
}

counter() { # $1 = SIPp output, $2 = counter name: cumulative value of the last such line
    grep -E "^ *$2 " "$1" | tail -1 | awk -F'|' '{ gsub(/ /, "", $NF); print $NF }'
}

lscpu | grep 'Model name' || true
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); logs in $OUT"
printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' rate server calls ok failed \
    retrans retrans_stf wall_s cpu_s cpu_s_per_1000 vmhwm_kB clean rcvbuf_drops

index=0
for rate in "${RATES[@]}"; do
    calls=$((rate * SECONDS_PER_RUN))
    if [ $((index % 2)) -eq 0 ]; then order=(ours theirs); else order=(theirs ours); fi
    index=$((index + 1))
    unclean=0
    for server in "${order[@]}"; do
        tag="$server-$rate"
        start_server "$server" "$OUT/$tag.server.log"
        before=$(ticks "$SERVER_PID")
        drops_before=$(rcvbuf_errors)
        t0=$(date +%s.%N)
        status=0
        (cd "$OUT" && exec timeout $((SECONDS_PER_RUN * 3 + 90)) sipp -sn uac "127.0.0.1:$PORT" \
            -i 127.0.0.1 -p "$CLIENT_PORT" -m "$calls" -r "$rate" -l 10000 \
            -nostdin -timeout 60 -timeout_error \
            -trace_stat -stf "$tag.stat.csv" -fd 1) >"$OUT/$tag.client.log" 2>&1 || status=$?
        t1=$(date +%s.%N)
        after=$(ticks "$SERVER_PID")
        drops=$(($(rcvbuf_errors) - drops_before))
        hwm=$(awk '/^VmHWM/ { print $2 }' "/proc/$SERVER_PID/status")
        cleanup
        SERVER_PID=""

        ok=$(counter "$OUT/$tag.client.log" "Successful call")
        failed=$(counter "$OUT/$tag.client.log" "Failed call")
        rt=$(retrans "$OUT/$tag.client.log")
        # Retransmissions(C), the cumulative counter of SIPp's statistics file, last line.
        rt_stf=$(awk -F';' 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "Retransmissions(C)") c = i; next }
                           { v = $c } END { print v + 0 }' "$OUT/$tag.stat.csv")
        clean=yes
        if [ "$status" -ne 0 ] || [ "${failed:-1}" != 0 ] || [ "$rt" != 0 ] || [ "$rt_stf" != 0 ] ||
            [ "${ok:-0}" != "$calls" ]; then
            clean=no
            unclean=1
        fi
        awk -v r="$rate" -v s="$server" -v c="$calls" -v ok="${ok:-?}" -v f="${failed:-?}" \
            -v rt="$rt" -v rs="$rt_stf" -v t0="$t0" -v t1="$t1" -v b="$before" -v a="$after" \
            -v hz="$HZ" -v h="$hwm" -v cl="$clean" -v d="$drops" 'BEGIN {
                cpu = (a - b) / hz
                printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%.2f\t%.3f\t%s\t%s\t%s\n",
                    r, s, c, ok, f, rt, rs, t1 - t0, cpu, cpu * 1000 / c, h, cl, d
            }'
    done
    if [ "$unclean" -eq 1 ] && [ "$KEEP_GOING" != 1 ]; then
        echo "a server was not clean at $rate calls/s: stopping" >&2
        break
    fi
done
