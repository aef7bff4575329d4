#!/usr/bin/env bash
# Installs what fpsync's build, demo and tests need on a fresh Debian 12
# machine (as root), then builds every binary. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(iproute2 procps dbus systemd iputils-ping netsniff-ng conntrack nftables iptables tcpdump util-linux openssl
  shellcheck man-db groff-base bash-completion python3-prometheus-client)
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

# The manual: man pages generated from the programs' clap definitions
# (daemons in section 8, clients in 1), the scripts' hand-written pages,
# and shell completions (bash; zsh and fish where those shells look).
manual="target/$profile/manual"
"target/$profile/fpsync-manual" "$manual" >/dev/null
install -d /usr/local/share/man/man1 /usr/local/share/man/man8 \
  /usr/share/bash-completion/completions /usr/local/share/zsh/site-functions \
  /usr/local/share/fish/vendor_completions.d
install -m 0644 "$manual"/man1/*.1 /usr/local/share/man/man1/
install -m 0644 "$manual"/man8/*.8 etc/man/*.8 /usr/local/share/man/man8/
install -m 0644 "$manual"/bash/* /usr/share/bash-completion/completions/
install -m 0644 "$manual"/zsh/_* /usr/local/share/zsh/site-functions/
install -m 0644 "$manual"/fish/*.fish /usr/local/share/fish/vendor_completions.d/
if command -v mandb >/dev/null; then mandb -q /usr/local/share/man 2>/dev/null || true; fi

# The unit, only where systemd runs (PID 1): it starts fpsyncd from this
# build, on the system bus, with the shipped D-Bus policy. Elsewhere the
# unit and the policy are left alone.
if [ -d /run/systemd/system ]; then
  install -d /etc/systemd/system /etc/dbus-1/system.d
  sed "s#/usr/sbin/fpsyncd#/usr/local/sbin/fpsyncd#" etc/systemd/fpsyncd.service \
    >/etc/systemd/system/fpsyncd.service
  install -m 0644 etc/dbus-1/system.d/org.fpsync.conf /etc/dbus-1/system.d/
  systemctl daemon-reload
  systemctl reload dbus 2>/dev/null || true
  echo "setup: installed fpsyncd.service (systemctl enable --now fpsyncd)"
fi
