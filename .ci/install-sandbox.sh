#!/usr/bin/env bash
# Installs what orch's agent sandbox needs: bubblewrap (`bwrap`, the namespaces), socat (the
# model bridge's loopback relay inside the sandbox) and prlimit (util-linux, the limits). Safe to
# run again: nothing is installed when all three are there. Fails, naming the fix, when
# unprivileged user namespaces are off.
set -euo pipefail

need_apt=()
command -v bwrap >/dev/null || need_apt+=(bubblewrap)
command -v socat >/dev/null || need_apt+=(socat)
command -v prlimit >/dev/null || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing ${need_apt[*]} and not root: apt-get install ${need_apt[*]}, then run $0 again" >&2
    exit 2
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

if ! env -i PATH=/usr/bin:/bin bwrap --unshare-all --unshare-user --uid 1000 --ro-bind / / true; then
  echo "bwrap cannot create namespaces here: allow unprivileged user namespaces" \
    "(sysctl kernel.unprivileged_userns_clone=1; on Ubuntu also" \
    "kernel.apparmor_restrict_unprivileged_userns=0)" >&2
  exit 1
fi
echo "sandbox prerequisites: bwrap $(bwrap --version | cut -d' ' -f2), socat, prlimit"
