#!/usr/bin/env bash
# Installs the agent CLIs that orch-agent's integration tests drive (Claude Code and Codex) into
# .ci/tools, at pinned versions, with npm. Never installs globally. Safe to run again: a CLI that
# is already there at its pinned version is left alone, so a warm run costs only two `npm ls`.
#
# After it ran, the programs are .ci/tools/node_modules/.bin/claude and .../codex, where the tests
# look for them (or set ORCH_TEST_CLAUDE_BIN / ORCH_TEST_CODEX_BIN to use others).
set -euo pipefail
cd "$(dirname "$0")/.."

readonly PREFIX=.ci/tools
# Bump these together with the versions named in docs/agents/*.md.
readonly PINNED=(
  "@anthropic-ai/claude-code@2.1.197"
  "@openai/codex@0.169.0"
)

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

"$PREFIX/node_modules/.bin/claude" --version
"$PREFIX/node_modules/.bin/codex" --version
