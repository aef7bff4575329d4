#!/usr/bin/env bash
# fpsyncd, the supervisor: two instances in two namespaces feeding two
# blades, started with `fpsync start` (on a private bus when no system bus
# runs), changes in both namespaces, then `fpsync status`, `fpsync show
# stats`, the IPsec HA switch of one blade, and `fpsync stop`. Everything it
# creates is removed when it ends.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${FPSYNC_DEMO_NO_SETUP:-}" ] || scripts/setup.sh
bin=$PWD/target/debug
dir=$(mktemp -d /tmp/fpsync-sup-demo.XXXXXX)
export CONF_FILE_linux_fp_sync=$dir/linux-fp-sync.env CONF_FILE_cmgr=$dir/cmgr.env
export FPSYNC_NO_JOURNAL=${FPSYNC_NO_JOURNAL:-1}
cleanup() {
  "$bin/fpsync" stop >/dev/null 2>&1 || true
  ip netns del fpsync-red 2>/dev/null || true
  ip netns del fpsync-blue 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT
for ns in fpsync-red fpsync-blue; do ip netns del "$ns" 2>/dev/null || true; ip netns add "$ns"; done

cat >"$dir/linux-fp-sync.env" <<CONF
INSTANCES="1 2"
FPSYNC_RUN_DIR=$dir/run
CMGR_INSTANCE_CONF=$dir/cmgr@%i.env
CONF
# shellcheck disable=SC2016 # the file's own syntax, written literally
echo ': ${CMGR_OPTIONS:=}' >"$dir/cmgr.env"
printf 'CMGR_NETNS=fpsync-red\nCMGR_BLADES=1\n' >"$dir/cmgr@1.env"
printf 'CMGR_NETNS=fpsync-blue\nCMGR_BLADES=2\n' >"$dir/cmgr@2.env"

echo "== fpsync start (instances 1 and 2, blades 1 and 2)"
"$bin/fpsync" start --bus private

echo "== changes in both namespaces"
set -x
ip -n fpsync-red link add veth0 type veth peer name veth1
ip -n fpsync-red link set veth0 up
ip -n fpsync-red addr add 10.0.0.1/24 dev veth0
ip -n fpsync-red route add 192.168.10.0/24 via 10.0.0.2
ip -n fpsync-blue link add veth0 type veth peer name veth1
ip -n fpsync-blue link set veth0 up
ip -n fpsync-blue addr add 10.1.0.1/24 dev veth0
ip -n fpsync-blue route add 192.168.20.0/24 via 10.1.0.2
ip -n fpsync-blue route add 192.168.21.0/24 via 10.1.0.2
ip -n fpsync-blue -6 route add 2001:db8:20::/64 dev veth0
set +x
sleep 0.5

echo "== fpsync status"
"$bin/fpsync" status
echo "== fpsync show stats"
"$bin/fpsync" show stats
echo "== fpsync ipsec ha enable -b 2; fpsync ipsec ha show"
"$bin/fpsync" ipsec ha enable -b 2
"$bin/fpsync" ipsec ha show
echo "== the same over D-Bus: busctl --address=\$(cat $dir/run/bus) tree org.fpsync.Supervisor1"
busctl --address="$(cat "$dir/run/bus")" tree org.fpsync.Supervisor1
echo "== fpsync stop"
"$bin/fpsync" stop
