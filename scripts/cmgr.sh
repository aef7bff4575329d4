#!/bin/sh
# cmgr.sh start|stop|restart|status: the cache manager as a service.
# Reads /etc/cmgr.env, or the file named by CONF_FILE_cmgr.
set -u

usage() {
  echo "usage: cmgr.sh start|stop|restart|status" >&2
  exit 2
}
[ $# -eq 1 ] || usage

conf=${CONF_FILE_cmgr:-/etc/cmgr.env}
if [ ! -r "$conf" ]; then
  echo "cmgr.sh: cannot read the configuration file $conf" >&2
  exit 1
fi
# Sourcing gives the seed's precedence: `: ${VAR:=v}` yields to the
# environment, `VAR=v` overrides it.
# shellcheck disable=SC1090
. "$conf" || { echo "cmgr.sh: $conf has errors" >&2; exit 1; }

CMGRD=${CMGRD:-cmgrd}
DAEMONCTL=${DAEMONCTL:-daemonctl}

yes() {
  case "${1:-}" in
    true|yes|on|1) return 0 ;;
    false|no|off|0|"") return 1 ;;
    *) echo "cmgr.sh: $2=$1 in $conf: expected true or false" >&2; exit 2 ;;
  esac
}

opts=${CMGR_OPTIONS:-}
[ -n "${DEBUG:-}" ] && opts="$opts -d $DEBUG"
yes "${BPF_OPT:-}" BPF_OPT && opts="$opts -A"
if [ -n "${HA_IPSEC:-}" ]; then
  yes "$HA_IPSEC" HA_IPSEC && opts="$opts -R"
elif yes "${HA:-}" HA; then
  opts="$opts -R"
fi

# The instance id and pid file, as cmgrd derives them from its options.
id=$(printf '%s\n' "$opts" | sed -n 's/.*-I[[:space:]]*\([0-9][0-9]*\).*/\1/p')
pidfile=$(printf '%s\n' "$opts" | sed -n 's/.*--pid-file[[:space:]=]*\([^[:space:]]*\).*/\1/p')
pidfile=${pidfile:-/run/fpsync/cmgrd$id.pid}
name=cmgrd$id

running_pid() {
  [ -r "$pidfile" ] || return 1
  pid=$(cat "$pidfile" 2>/dev/null)
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  echo "$pid"
}

start() {
  if pid=$(running_pid); then
    echo "$name is already running (pid $pid)"
    return 0
  fi
  # shellcheck disable=SC2086
  "$CMGRD" $opts
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "$name started (pid $(cat "$pidfile" 2>/dev/null))"
  fi
  return $rc
}

stop() {
  if ! pid=$(running_pid); then
    echo "$name is not running"
    return 0
  fi
  kill -TERM "$pid"
  i=0
  while kill -0 "$pid" 2>/dev/null; do
    i=$((i + 1))
    if [ $i -gt 100 ]; then
      echo "$name (pid $pid) did not stop in 10 s; killing it" >&2
      kill -KILL "$pid"
      break
    fi
    sleep 0.1
  done
  rm -f "$pidfile"
  echo "$name stopped"
}

status() {
  if pid=$(running_pid); then
    echo "$name is running (pid $pid)"
    "$DAEMONCTL" "$name" show sync 2>/dev/null | sed -n '1p'
    return 0
  fi
  echo "$name is not running"
  return 3
}

case "$1" in
  start) start ;;
  stop) stop ;;
  restart) stop && start ;;
  status) status ;;
  *) usage ;;
esac
