#!/usr/bin/env bash
# A throwaway single-node Ceph cluster with an S3 gateway on 127.0.0.1, for the S3 backend's tests and CI
# (Debian's ceph-mon, ceph-osd, radosgw, ceph-common: Deploy/install-deps.sh installs them). Everything lives in DIR:
#   bash Deploy/ceph.sh start DIR   one mon, one osd on memstore (RAM, nothing on disk), radosgw; an S3 user with
#                                  the test keys; waits by polling until the gateway answers; writes DIR/env
#   bash Deploy/ceph.sh stop DIR    kills every daemon by the pid in its pid file (also after a start that failed
#                                  halfway), waits for each to exit
# DIR/env (shell syntax): S3_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, S3_REGION.
# Ports are free ones picked at start unless CEPH_MON_PORT or CEPH_RGW_PORT say otherwise; CEPH_START_TIMEOUT
# (seconds, default 120) bounds each wait. Needs no root and writes nothing outside DIR.
set -Eeuo pipefail

usage() { echo "usage: $0 start DIR | stop DIR" >&2; exit 64; }
[ $# -eq 2 ] || usage
cmd=$1
D=$(mkdir -p "$2" && cd "$2" && pwd)
CONF=$D/ceph.conf
ACCESS_KEY=${CEPH_S3_ACCESS_KEY:-OUTPOSTTESTACCESSKEY}
SECRET_KEY=${CEPH_S3_SECRET_KEY:-outpostTestSecretKey0123456789abcdefghij}
TIMEOUT=${CEPH_START_TIMEOUT:-120}

# Running, not a zombie (in a container whose init does not reap, a killed daemon stays one).
alive() { kill -0 "$1" 2>/dev/null && ! grep -q '^[0-9]* ([^)]*) Z' "/proc/$1/stat" 2>/dev/null; }

stop() {
  local pids=() f p
  for f in "$D"/run/*.pid; do
    [ -e "$f" ] || continue
    p=$(tr -dc 0-9 <"$f")
    if [ -n "$p" ] && alive "$p"; then pids+=("$p"); kill -TERM "$p" 2>/dev/null || true; fi
  done
  # Up to 10 s for a clean exit, then SIGKILL: a test run must never leave a daemon behind.
  for _ in $(seq 1 100); do
    local any=0
    for p in "${pids[@]}"; do alive "$p" && any=1; done
    [ $any -eq 0 ] && break
    sleep 0.1
  done
  for p in "${pids[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
  rm -f "$D"/run/*.pid
}

# The daemons outlive this script: they must not hold the caller's descriptors (a pipe the caller reads to EOF,
# or the socket Foundation's Process watches for its child's exit), so everything above stderr is closed first.
close_inherited() {
  local fd
  for fd in /proc/$$/fd/*; do
    fd=${fd##*/}
    [ "$fd" -gt 2 ] 2>/dev/null && eval "exec $fd>&-" 2>/dev/null || true
  done
}

# A port nothing listens on now (the kernel's pick for port 0).
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# Polls `$@` until it succeeds or the timeout passes; on timeout, stops what started and shows the logs.
wait_for() {
  local what=$1; shift
  local deadline=$((SECONDS + TIMEOUT))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      echo "ceph.sh: $what not ready after ${TIMEOUT}s; logs in $D/log" >&2
      tail -n 20 "$D"/log/*.log >&2 || true
      stop
      exit 1
    fi
    sleep 0.2
  done
}

ceph_() { timeout 30 ceph -c "$CONF" --connect-timeout 10 "$@"; }
osd_up() { ceph_ osd stat -f json | grep -q '"num_up_osds":1'; }
rgw_up() { curl -fsS -o /dev/null "http://127.0.0.1:$RGW_PORT/"; }

start() {
  for b in ceph-mon ceph-osd radosgw radosgw-admin monmaptool ceph curl python3; do
    command -v "$b" >/dev/null || {
      echo "ceph.sh: $b is not installed: run \`bash Deploy/install-deps.sh\` (installs ceph-mon ceph-osd radosgw ceph-common)" >&2
      exit 1
    }
  done
  if compgen -G "$D/run/*.pid" >/dev/null; then stop; fi
  rm -rf "$D/mon" "$D/osd" "$D/rgw" "$D/run" "$D/log" "$D/env"
  mkdir -p "$D/mon" "$D/osd" "$D/rgw" "$D/run" "$D/log"
  MON_PORT=${CEPH_MON_PORT:-$(free_port)}
  RGW_PORT=${CEPH_RGW_PORT:-$(free_port)}
  local fsid
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  cat >"$CONF" <<EOF
[global]
fsid = $fsid
mon host = v1:127.0.0.1:$MON_PORT
auth cluster required = none
auth service required = none
auth client required = none
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
run dir = $D/run
pid file = $D/run/\$name.pid
admin socket = $D/run/\$name.asok
log file = $D/log/\$name.log
mon cluster log file = $D/log/cluster.log
crash dir = $D/crash
keyring = $D/keyring
osd objectstore = memstore
# The crush entry is ours (osd crush add, below): the OSD's own update at start races its monitor client, which
# sometimes sends it before it knows the cluster's fsid ("wrong fsid"), and the OSD then exits.
osd crush update on start = false
osd class update on start = false
memstore device bytes = 2147483648
[mon.a]
mon data = $D/mon
[osd.0]
osd data = $D/osd
[client.rgw]
rgw frontends = beast endpoint=127.0.0.1:$RGW_PORT
rgw data = $D/rgw
EOF
  # A start that fails halfway leaves pid files behind: `stop DIR` (and the trap) kill what did start.
  trap 'rc=$?; echo "ceph.sh: \`$BASH_COMMAND\` failed ($rc); logs in $D/log" >&2; tail -n 5 "$D/log/daemons.out" >&2 2>/dev/null; stop' ERR
  close_inherited
  monmaptool --create --add a "v1:127.0.0.1:$MON_PORT" --fsid "$fsid" "$D/monmap" >/dev/null
  ceph-mon -c "$CONF" --mkfs -i a --monmap "$D/monmap"
  ceph-mon -c "$CONF" -i a </dev/null >>"$D/log/daemons.out" 2>&1
  wait_for "the monitor" ceph_ -s
  # The OSD's uuid, given to both the monitor and the OSD's mkfs (Ceph's manual deployment steps).
  local id osd_uuid
  osd_uuid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  id=$(ceph_ osd create "$osd_uuid" 0)
  [ "$id" = 0 ] || { echo "ceph.sh: expected osd 0, got $id" >&2; stop; exit 1; }
  ceph-osd -c "$CONF" -i 0 --mkfs --osd-uuid "$osd_uuid" </dev/null >>"$D/log/daemons.out" 2>&1
  ceph-osd -c "$CONF" -i 0 </dev/null >>"$D/log/daemons.out" 2>&1
  ceph_ osd crush add osd.0 1.0 host=localhost root=default >/dev/null 2>&1
  wait_for "the osd" osd_up
  radosgw -c "$CONF" -n client.rgw </dev/null >>"$D/log/daemons.out" 2>&1
  wait_for "radosgw on 127.0.0.1:$RGW_PORT" rgw_up
  timeout 60 radosgw-admin -c "$CONF" user create --uid=outpost-test --display-name=outpost-test \
    --access-key="$ACCESS_KEY" --secret="$SECRET_KEY" >/dev/null
  trap - ERR
  umask 077
  cat >"$D/env.tmp" <<EOF
S3_ENDPOINT=http://127.0.0.1:$RGW_PORT
S3_REGION=us-east-1
AWS_ACCESS_KEY_ID=$ACCESS_KEY
AWS_SECRET_ACCESS_KEY=$SECRET_KEY
EOF
  mv "$D/env.tmp" "$D/env"
  echo "ceph.sh: radosgw on http://127.0.0.1:$RGW_PORT (mon on $MON_PORT); keys in $D/env" >&2
}

case $cmd in
  start) start ;;
  stop) stop ;;
  *) usage ;;
esac
