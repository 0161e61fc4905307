#!/usr/bin/env bash
# Makes a docker daemon answer for orch-deploy's docker tests, installing what is missing first:
# docker.io (dockerd and the CLI) and gcc with a static libc (the tests' images are FROM scratch
# holding a `gcc -static` server, since CI cannot pull images). Safe to run again: a daemon that
# already answers `docker info` is reused, and nothing installed is installed twice.
#
# The daemon started here runs without iptables rules and without the default bridge
# (--iptables=false --ip6tables=false --bridge=none): the tests' containers use the host network
# on loopback ports only. Its log is /tmp/orch-dockerd.log.
set -euo pipefail

readonly LOG=/tmp/orch-dockerd.log
readonly READY_TIMEOUT_SECS=60

log() { printf '== install-docker: %s (%ss)\n' "$*" "$SECONDS" >&2; }

need_apt=()
command -v dockerd >/dev/null || need_apt+=(docker.io)
command -v gcc >/dev/null || need_apt+=(gcc)
# The static C library (libc.a) comes with libc6-dev.
[ -e /usr/lib/x86_64-linux-gnu/libc.a ] || [ -e /usr/lib/libc.a ] || need_apt+=(libc6-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need_apt[*]} and not root: install them, then run $0 again" >&2
    exit 2
  fi
  log "installing ${need_apt[*]} with apt"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi

if docker info >/dev/null 2>&1; then
  log "dockerd already answers"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "dockerd is not running and we are not root: start it (or add this user to the docker group), then run $0 again" >&2
  exit 2
fi

log "starting dockerd (log: $LOG)"
nohup dockerd --iptables=false --ip6tables=false --bridge=none >>"$LOG" 2>&1 &

for _ in $(seq "$READY_TIMEOUT_SECS"); do
  if docker info >/dev/null 2>&1; then
    log "dockerd is ready"
    exit 0
  fi
  sleep 1
done
echo "dockerd did not answer within ${READY_TIMEOUT_SECS}s; the end of $LOG:" >&2
tail -n 20 "$LOG" >&2 || true
exit 1
