#!/usr/bin/env bash
# The main job, end to end: a namespace, an fpd (blade 1) and a cmgrd
# syncing it, a few `ip`, `nft`, `iptables-legacy` and `conntrack`
# changes, then the fast path's tables and the
# equivalence check. Everything it creates is removed when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
bin=target/debug
ns=fpsync-demo
dir=$(mktemp -d /tmp/fpsync-demo.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns del "$ns" 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
ip netns del "$ns" 2>/dev/null || true
ip netns add "$ns"
sock="$dir/fpd1.sock"
export FPSYNC_NO_JOURNAL=1

echo "== starting fpd (blade 1) and cmgrd (instance 0) in netns $ns"
"$bin/fpd" --blade 1 --listen "unix:$sock" 2>"$dir/fpd.log" & pids+=($!)
for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
"$bin/cmgrd" -F -I 0 --netns "$ns" --blade "1=unix:$sock" 2>"$dir/cmgrd.log" & pids+=($!)

echo "== changing Linux with ip"
set -x
ip -n "$ns" link add veth0 type veth peer name veth1
ip -n "$ns" link set veth0 up
ip -n "$ns" link set veth1 up
ip -n "$ns" addr add 10.0.0.1/24 dev veth0
ip -n "$ns" -6 addr add 2001:db8::1/64 dev veth0 nodad
ip -n "$ns" route add 192.168.10.0/24 via 10.0.0.2
ip -n "$ns" route add 192.168.20.0/24 nexthop via 10.0.0.2 weight 1 nexthop via 10.0.0.3 weight 2
ip -n "$ns" nexthop add id 5 via 10.0.0.4 dev veth0
ip -n "$ns" route add 192.168.30.0/24 nhid 5 table 100
ip -n "$ns" route add blackhole 198.51.100.0/24
ip -n "$ns" -6 route add 2001:db8:99::/64 via 2001:db8::2
ip -n "$ns" neigh add 10.0.0.2 lladdr 02:00:00:00:00:02 dev veth0
set +x

echo "== changing netfilter with nft (sets too), iptables-legacy, conntrack, and a tc shaper"
set -x
ip netns exec "$ns" nft add table inet demo
ip netns exec "$ns" nft add chain inet demo input '{ type filter hook input priority 0; policy accept; }'
ip netns exec "$ns" nft add rule inet demo input tcp dport 22 counter accept
ip netns exec "$ns" nft add set inet demo admins '{ type ipv4_addr; flags interval; }'
ip netns exec "$ns" nft add element inet demo admins '{ 10.0.0.0/28, 10.0.0.100-10.0.0.120 }'
ip netns exec "$ns" nft add rule inet demo input ip saddr @admins tcp dport '{ 443, 8443 }' accept
ip netns exec "$ns" tc qdisc add dev veth1 root tbf rate 10mbit burst 32k latency 50ms
ip netns exec "$ns" iptables-legacy -A INPUT -s 10.0.0.0/24 -p udp --dport 53 -j ACCEPT
ip netns exec "$ns" iptables-legacy -t nat -A POSTROUTING -o veth0 -j MASQUERADE
ip netns exec "$ns" conntrack -I -p udp -s 10.0.0.1 -d 10.0.0.9 --sport 5000 --dport 53 --timeout 120 2>/dev/null
set +x

echo "== equivalence check (no output: in sync)"
"$bin/fpsync-check" --netns "$ns" --fpc "unix:$sock" --wait 2 && echo "in sync"

echo "== the fast path's tables (as fpd holds them)"
"$bin/fpsync-check" --fpc "unix:$sock" --dump-fastpath

echo "== a silent deletion: the link goes down, the kernel drops its IPv4 routes without telling"
ip -n "$ns" link set veth0 down
"$bin/fpsync-check" --netns "$ns" --fpc "unix:$sock" --wait 2 && echo "in sync"

echo "== cmgrd console: show sync, show queue, show netlink"
for c in "show sync" "show queue" "show netlink"; do
  "$bin/daemonctl" cmgrd0 "$c"
done

echo "== the supervisor: fpsyncd with two instances and two blades"
FPSYNC_DEMO_NO_SETUP=1 scripts/demo-supervisor.sh
