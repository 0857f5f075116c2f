#!/bin/sh
# Container entrypoint of the dataplane image.
#
#   entrypoint.sh run [dataplane run options...]   (default: run --stats-period 5)
#   entrypoint.sh check [--json]
#   entrypoint.sh <any other command...>           (exec'd as is, e.g. a shell)
#
# `run` first resolves the plan with `dataplane check`: discovery finds the ports (SR-IOV
# device-plugin env, Multus network-status, userspace CNI, OpenStack config drive), the
# exclusive cores (CPU affinity, cgroup cpuset) and the huge pages (the pod's hugetlbfs mount
# and what is free there); `run` prints the plan. The Downward API annotations and vhost-user
# sockets can appear after the container starts, so a refused plan is retried every
# DATAPLANE_RETRY_INTERVAL seconds, up to DATAPLANE_RETRIES times, before giving up with the
# refusal (exit 2). Then it execs `dataplane run` on the same config.
#
# Environment:
#   DATAPLANE_CONFIG          config file (default /etc/dataplane/default.toml)
#   DATAPLANE_RETRIES         plan attempts before giving up (default 30)
#   DATAPLANE_RETRY_INTERVAL  seconds between attempts (default 2)
#   DATAPLANE_HUGEPAGE_SETUP  1: let the dataplane reserve/mount huge pages itself (needs
#                             privileges); default 0: the platform (kubelet, host) provides them.
set -eu

cfg=${DATAPLANE_CONFIG:-/etc/dataplane/default.toml}
retries=${DATAPLANE_RETRIES:-30}
interval=${DATAPLANE_RETRY_INTERVAL:-2}

cmd=${1:-run}
[ $# -gt 0 ] && shift

case "$cmd" in
  check)
    exec dataplane check -c "$cfg" "$@"
    ;;
  run)
    n=1
    while :; do
      if dataplane check -c "$cfg" >/dev/null; then
        break
      else
        rc=$?
      fi
      if [ "$rc" -ne 2 ] || [ "$n" -ge "$retries" ]; then
        echo "entrypoint: no usable plan from $cfg after $n attempt(s) (exit $rc)" >&2
        exit "$rc"
      fi
      echo "entrypoint: plan refused (attempt $n/$retries), retrying in ${interval}s" >&2
      n=$((n + 1))
      sleep "$interval"
    done
    if [ "${DATAPLANE_HUGEPAGE_SETUP:-0}" = 1 ]; then
      exec dataplane run -c "$cfg" "$@"
    fi
    exec dataplane run -c "$cfg" --no-hugepage-setup "$@"
    ;;
  *)
    exec "$cmd" "$@"
    ;;
esac
