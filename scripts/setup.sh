#!/usr/bin/env bash
# Installs what fpsync's build, demo and tests need on a fresh Debian 12
# machine (as root), then builds every binary. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(iproute2 procps dbus systemd iputils-ping netsniff-ng conntrack nftables iptables tcpdump util-linux)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p /var/run/netns /run/fpsync

profile=${FPSYNC_PROFILE:-debug}
if [ "$profile" = release ]; then
  cargo build --release --workspace --bins
else
  cargo build --workspace --bins
fi

# Install: binaries and scripts on the PATH (links into this build), the
# default configuration files where none exist yet.
for b in cmgrd fpd daemonctl fpsync-check fpsyncd fpsync; do
  [ -x "target/$profile/$b" ] && ln -sf "$PWD/target/$profile/$b" "/usr/local/sbin/$b"
done
for s in cmgr.sh linux-fp-sync.sh; do
  ln -sf "$PWD/scripts/$s" "/usr/local/sbin/$s"
done
for f in cmgr.env linux-fp-sync.env; do
  [ -e "/etc/$f" ] || install -m 0644 "etc/$f" "/etc/$f"
done
