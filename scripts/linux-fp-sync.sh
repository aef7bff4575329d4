#!/bin/sh
# linux-fp-sync.sh start|stop|restart|status [complete]
# Starts the fast path manager (fpd, one per blade) and the cache manager.
# With the supervisor installed (fpsync, fpsyncd), delegates to it; reads
# /etc/linux-fp-sync.env, or the file named by CONF_FILE_linux_fp_sync.
set -u

usage() {
  echo "usage: linux-fp-sync.sh start|stop|restart|status [complete]" >&2
  exit 2
}
case "${1:-}" in
  start|stop|restart) [ $# -eq 1 ] || usage ;;
  status) [ $# -eq 1 ] || { [ $# -eq 2 ] && [ "$2" = complete ]; } || usage ;;
  *) usage ;;
esac

if command -v fpsync >/dev/null 2>&1 && command -v fpsyncd >/dev/null 2>&1; then
  exec fpsync "$@"
fi

conf=${CONF_FILE_linux_fp_sync:-/etc/linux-fp-sync.env}
if [ ! -r "$conf" ]; then
  echo "linux-fp-sync.sh: cannot read the configuration file $conf" >&2
  exit 1
fi
# shellcheck disable=SC1090
. "$conf" || { echo "linux-fp-sync.sh: $conf has errors" >&2; exit 1; }
FPD=${FPD:-fpd}
CMGR_SH=${CMGR_SH:-cmgr.sh}
: "${BLADES:=1}"

# BLADES is split on blanks, never glob-expanded; each word is a number.
set -f
for b in $BLADES; do
  case "$b" in
    ""|*[!0-9]*) echo "linux-fp-sync.sh: BLADES=$BLADES in $conf: $b is not a blade number" >&2; exit 2 ;;
    *) ;;
  esac
done

# The pid of blade $1's fpd, from its pid file, when the pid is an fpd
# (/proc/PID/comm) serving that blade (--blade on its command line): a
# stale file naming another process is ignored, and that process left alone.
fpd_pid() {
  f=/run/fpsync/fpd$1.pid
  [ -r "$f" ] || return 1
  pid=$(head -c 32 "$f" 2>/dev/null | tr -d '[:space:]')
  case "$pid" in
    ""|*[!0-9]*) return 1 ;;
    *) ;;
  esac
  kill -0 "$pid" 2>/dev/null || return 1
  [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = fpd ] || return 1
  blade=$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null |
    sed -n '/^--blade$/{n;p;q;}; s/^--blade=//p' | head -n 1)
  [ "$blade" = "$1" ] || return 1
  echo "$pid"
}

start() {
  mkdir -p /run/fpsync
  for b in $BLADES; do
    if pid=$(fpd_pid "$b"); then
      echo "fpd$b is already running (pid $pid)"
      continue
    fi
    setsid "$FPD" --blade "$b" </dev/null >/dev/null 2>>"/run/fpsync/fpd$b.log" &
    echo $! >"/run/fpsync/fpd$b.pid"
    i=0
    until [ -S "/run/fpsync/fpd$b.sock" ]; do
      i=$((i + 1))
      if [ $i -gt 100 ] || ! kill -0 "$(cat "/run/fpsync/fpd$b.pid")" 2>/dev/null; then
        echo "linux-fp-sync.sh: fpd$b did not start: see /run/fpsync/fpd$b.log" >&2
        return 1
      fi
      sleep 0.1
    done
    echo "fpd$b started (pid $(cat "/run/fpsync/fpd$b.pid"))"
  done
  "$CMGR_SH" start
}

stop() {
  "$CMGR_SH" stop
  for b in $BLADES; do
    if pid=$(fpd_pid "$b"); then
      kill -TERM "$pid"
      i=0
      while kill -0 "$pid" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
          echo "fpd$b (pid $pid) did not stop in 10 s; killing it" >&2
          kill -KILL "$pid"
          break
        fi
        sleep 0.1
      done
      echo "fpd$b stopped"
    fi
    rm -f "/run/fpsync/fpd$b.pid"
  done
}

status() {
  rc=0
  for b in $BLADES; do
    if pid=$(fpd_pid "$b"); then echo "fpd$b is running (pid $pid)"; else echo "fpd$b is not running"; rc=3; fi
  done
  "$CMGR_SH" status || rc=3
  if [ "${1:-}" = complete ]; then
    echo "installation:"
    for bin in cmgrd fpd daemonctl fpsync-check; do
      p=$(command -v "$bin") && echo "  $bin: $p ($("$bin" --version 2>/dev/null | head -1))" || echo "  $bin: missing"
    done
    for f in "$conf" "${CONF_FILE_cmgr:-/etc/cmgr.env}"; do
      [ -r "$f" ] && echo "  config $f: present" || echo "  config $f: missing"
    done
    [ -S /run/systemd/journal/socket ] && echo "  journal: running" || echo "  journal: not running (logs go to files)"
    echo "  kernel: $(uname -r)"
  fi
  return $rc
}

case "$1" in
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status "${2:-}" ;;
  *) usage ;;
esac
