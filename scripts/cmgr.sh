#!/bin/sh
# cmgr.sh start|stop|restart|status: the cache manager as a service.
# Reads /etc/cmgr.env, or the file named by CONF_FILE_cmgr (man cmgr.sh).
#
# The pid file is trusted only when its pid is a cmgrd (/proc/PID/comm)
# of this instance (the -I of its command line): a stale file naming some
# other process is reported as not running and that process is left alone.
set -u

usage() {
  echo "usage: cmgr.sh start|stop|restart|status" >&2
  exit 2
}
[ $# -eq 1 ] || usage
action=$1

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

# cmgrd's arguments, as words: CMGR_OPTIONS is split on blanks (as the
# seed's script did) but never glob-expanded, then the switches follow.
set -f
# shellcheck disable=SC2086 # word splitting wanted, globbing off (set -f)
set -- ${CMGR_OPTIONS:-}
[ -n "${DEBUG:-}" ] && set -- "$@" -d "$DEBUG"
yes "${BPF_OPT:-}" BPF_OPT && set -- "$@" -A
if [ -n "${HA_IPSEC:-}" ]; then
  yes "$HA_IPSEC" HA_IPSEC && set -- "$@" -R
elif yes "${HA:-}" HA; then
  set -- "$@" -R
fi

# The instance id and the pid file, as cmgrd reads them from its words:
# `-I N`, `-IN` or `-I=N`; `--pid-file P` or `--pid-file=P` (the last wins).
# Prints "ID PIDFILE" (ID may be empty; PIDFILE empty when not given).
instance_of() {
  _id='' _pf='' _next=''
  for _w in "$@"; do
    case "$_next" in
      id) _id=$_w; _next=; continue ;;
      pf) _pf=$_w; _next=; continue ;;
    esac
    case "$_w" in
      -I) _next=id ;;
      -I=*) _id=${_w#-I=} ;;
      -I*) _id=${_w#-I} ;;
      --pid-file) _next=pf ;;
      --pid-file=*) _pf=${_w#--pid-file=} ;;
    esac
  done
  printf '%s\n%s\n' "$_id" "$_pf"
}

info=$(instance_of "$@")
id=$(printf '%s\n' "$info" | sed -n 1p)
pidfile=$(printf '%s\n' "$info" | sed -n 2p)
case "$id" in
  *[!0-9]*) echo "cmgr.sh: -I $id in CMGR_OPTIONS: expected a number" >&2; exit 2 ;;
esac
pidfile=${pidfile:-/run/fpsync/cmgrd$id.pid}
name=cmgrd$id

# The instance id on a running process's command line (NUL-separated in
# /proc/PID/cmdline), read with the same rules.
instance_of_pid() {
  # shellcheck disable=SC2046 # one word per NUL-separated argument
  (IFS='
'; set -f; instance_of $(tr '\0' '\n' <"/proc/$1/cmdline" 2>/dev/null)) | sed -n 1p
}

# The pid of this instance's cmgrd, from the pid file, when it is one.
running_pid() {
  [ -r "$pidfile" ] || return 1
  pid=$(head -c 32 "$pidfile" 2>/dev/null | tr -d '[:space:]')
  case "$pid" in
    ""|*[!0-9]*) return 1 ;;
  esac
  kill -0 "$pid" 2>/dev/null || return 1
  comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
  if [ "$comm" != cmgrd ]; then
    echo "cmgr.sh: $pidfile names pid $pid, which is $comm, not cmgrd: ignored" >&2
    return 1
  fi
  other=$(instance_of_pid "$pid")
  if [ "$other" != "$id" ]; then
    echo "cmgr.sh: $pidfile names pid $pid, which is cmgrd${other} (not $name): ignored" >&2
    return 1
  fi
  echo "$pid"
}

start() {
  if pid=$(running_pid); then
    echo "$name is already running (pid $pid)"
    return 0
  fi
  "$CMGRD" "$@"
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

case "$action" in
  start) start "$@" ;;
  stop) stop ;;
  restart) stop && start "$@" ;;
  status) status ;;
  *) usage ;;
esac
