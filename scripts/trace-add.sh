#!/bin/bash
# trace-add.sh [COUNT]: where one route add's time goes on its way from the
# kernel to fpd's ack (docs/BENCHMARKS.md, "Where one add's time goes").
# As root, after `cargo build --release --workspace --bins`; needs perf.
#
# Starts an fpd and a cmgrd (release build) on a throwaway namespace, adds
# COUNT routes (default 40) one at a time with `ip route add`, 50 ms apart,
# while `perf record` takes the syscall and wake-up tracepoints of the
# whole machine; then, for each add, prints the time from ip's sendmsg to
# cmgrd's listener receiving the notification, to its processor waking, to
# the processor handing the frame to the blade's task, to the frame sent to
# fpd, to fpd receiving it, to fpd's ack, as p50, min and
# max over the adds. Tracing every syscall adds its own cost: the segments
# compare with one another, not with bench-routes' (d).
set -euo pipefail
count=${1:-40}
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$root/target/release
for b in fpd cmgrd; do
    [ -x "$bin/$b" ] || { echo "trace-add.sh: no $bin/$b (cargo build --release --workspace --bins)" >&2; exit 1; }
done
command -v perf >/dev/null || { echo "trace-add.sh: perf is not installed" >&2; exit 1; }
ns=fpst-trace-$$
dir=$(mktemp -d /tmp/fpst-trace.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
ip netns add "$ns"
sock=$dir/fpd1.sock
export FPSYNC_NO_JOURNAL=1
"$bin/fpd" --blade 1 --listen "unix:$sock" 2>"$dir/fpd.log" & pids+=($!)
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
"$bin/cmgrd" -F -I "$((70000 + $$ % 10000))" --netns "$ns" --blade "1=unix:$sock" 2>"$dir/cmgrd.log" & pids+=($!)
ip -n "$ns" link add v0 type veth peer name v1
ip -n "$ns" link set v0 up
ip -n "$ns" link set v1 up
ip -n "$ns" addr add 10.0.0.1/24 dev v0
sleep 2
events=syscalls:sys_exit_recvfrom,syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg
events=$events,syscalls:sys_exit_futex,syscalls:sys_enter_write,sched:sched_wakeup
# shellcheck disable=SC2016 # expanded by the inner shell
perf record -q -o "$dir/perf.data" -e "$events" -a -- \
    sh -c 'for i in $(seq 1 "$1"); do ip -n "$2" route add "172.20.$((i / 256)).$((i % 256))/32" via 10.0.0.2; sleep 0.05; done' \
    sh "$count" "$ns" 2>/dev/null
perf script -i "$dir/perf.data" -F comm,tid,time,event,trace 2>/dev/null > "$dir/trace.txt"
python3 - "$dir/trace.txt" <<'EOF'
import re, statistics, sys

events = []
for line in open(sys.argv[1]):
    m = re.match(r"\s*(\S.*?)\s+(\d+)\s+([\d.]+):\s+(\S+):\s*(.*)", line)
    if m:
        comm, _tid, t, event, rest = m.groups()
        events.append((float(t) * 1e6, comm.strip(), event, rest))

def find(pred, start):
    if start is None:
        return None
    for j in range(start, min(start + 400, len(events))):
        if pred(events[j]):
            return j
    return None

def data(e):  # a receive that returned bytes (not EAGAIN)
    return e[2] == "syscalls:sys_exit_recvfrom" and not e[3].startswith("0xfff")

names = ["ip's sendmsg -> cmgrd's listener has it", "listener -> processor awake",
         "processor awake -> hands the frame over", "handed over -> frame sent to fpd",
         "sent -> fpd has it", "fpd has it -> ack sent", "ip's sendmsg -> fpd's ack"]
segments = {n: [] for n in names}
for s, e in enumerate(events):
    if e[1] != "ip" or e[2] != "syscalls:sys_enter_sendmsg":
        continue
    a = find(lambda x: x[1] == "cmgrd-listener" and data(x), s)
    b = find(lambda x: x[1] == "cmgrd" and x[2] == "syscalls:sys_exit_futex", a)
    # The processor wakes the blades' runtime (an eventfd write of 8 bytes).
    h = find(lambda x: x[1] == "cmgrd" and x[2] == "syscalls:sys_enter_write"
             and "count: 0x00000008" in x[3], b)
    c = find(lambda x: x[1] == "cmgrd-blades" and x[2] == "syscalls:sys_enter_sendto"
             and "len: 0x00000010" not in x[3], h)  # not a keepalive
    d = find(lambda x: x[1] == "tokio-rt-worker" and data(x), c)
    f = find(lambda x: x[1] == "tokio-rt-worker" and x[2] == "syscalls:sys_enter_sendto", d)
    if None in (a, b, h, c, d, f):
        continue
    t = [e[0]] + [events[i][0] for i in (a, b, h, c, d, f)]
    for n, x, y in zip(names, t, t[1:]):
        segments[n].append(y - x)
    segments[names[-1]].append(t[-1] - t[0])
for n, v in segments.items():
    if v:
        v.sort()
        print(f"{n:42s} p50 {statistics.median(v):6.0f} us  min {v[0]:5.0f}  max {v[-1]:6.0f}  ({len(v)} adds)")
EOF
