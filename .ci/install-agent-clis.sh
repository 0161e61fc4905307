#!/usr/bin/env bash
# Installs the agent CLIs that orch-agent's integration tests drive into .ci/tools, at pinned
# versions: Claude Code, Codex, the Gemini CLI and OpenCode with npm, aider with pip into a venv.
# Never installs globally. Safe to run again: a CLI that is already there at its pinned version is
# left alone, so a warm run costs only a few version reads.
#
# After it ran, the programs are .ci/tools/node_modules/.bin/{claude,codex,gemini,opencode} and
# .ci/tools/aider-venv/bin/aider, where the tests look for them (or set ORCH_TEST_CLAUDE_BIN,
# ORCH_TEST_CODEX_BIN, ORCH_TEST_AIDER_BIN... to use others).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly PREFIX=.ci/tools
# The versions come from crates/orch-agent/tested-versions.txt, the one list `orch doctor`
# compares installed CLIs against; bump them there (and in docs/agents/*.md).
readonly VERSIONS=crates/orch-agent/tested-versions.txt
PINNED=()
AIDER_VERSION=
while read -r kind installer package version; do
  case "$kind" in ''|'#'*) continue ;; esac
  case "$installer" in
    npm) PINNED+=("$package@$version") ;;
    pip) [ "$package" = aider-chat ] && AIDER_VERSION="$version" ;;
  esac
done <"$VERSIONS"
readonly PINNED AIDER_VERSION
if [ ${#PINNED[@]} -ne 4 ] || [ -z "$AIDER_VERSION" ]; then
  echo "$VERSIONS must list four npm CLIs and aider-chat" >&2
  exit 2
fi
readonly AIDER_VENV="$PREFIX/aider-venv"

if ! command -v npm >/dev/null; then
  echo "npm is missing: install Node.js 20 or later (with npm), then run $0 again" >&2
  exit 2
fi

# The version of package $1 installed under $PREFIX, or nothing.
installed_version() {
  local manifest="$PREFIX/node_modules/$1/package.json"
  [ -f "$manifest" ] || return 0
  node -e 'process.stdout.write(require(process.argv[1]).version || "")' "$PWD/$manifest"
}

missing=()
for spec in "${PINNED[@]}"; do
  name="${spec%@*}"
  want="${spec##*@}"
  have="$(installed_version "$name")"
  if [ "$have" = "$want" ]; then
    echo "$name $want: already installed"
  else
    echo "$name: have '${have:-nothing}', want $want"
    missing+=("$spec")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  mkdir -p "$PREFIX"
  # A package.json of its own keeps npm from walking up and editing a parent project.
  [ -f "$PREFIX/package.json" ] || echo '{ "private": true }' >"$PREFIX/package.json"
  npm install --prefix "$PREFIX" --no-audit --no-fund --save-exact "${missing[@]}"
fi

# aider: a Python package with many dependencies, kept in a venv of its own (about 2 minutes and
# 700 MB on a cold install). Needs Python 3.10 to 3.12 with the venv module.
aider_version() {
  [ -x "$AIDER_VENV/bin/python" ] || return 0
  "$AIDER_VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("aider-chat"))' \
    2>/dev/null || true
}
have="$(aider_version)"
if [ "$have" = "$AIDER_VERSION" ]; then
  echo "aider-chat $AIDER_VERSION: already installed"
else
  echo "aider-chat: have '${have:-nothing}', want $AIDER_VERSION"
  if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
    if [ "$(id -u)" -ne 0 ]; then
      echo "python3's venv module is missing: install python3-venv, then run $0 again" >&2
      exit 2
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
  fi
  [ -x "$AIDER_VENV/bin/python" ] || python3 -m venv "$AIDER_VENV"
  "$AIDER_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    "aider-chat==$AIDER_VERSION"
fi

for cli in claude codex gemini opencode; do
  "$PREFIX/node_modules/.bin/$cli" --version
done
"$AIDER_VENV/bin/aider" --version
