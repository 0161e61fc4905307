#!/bin/sh
# The bench's baseline: the same git and process work orch does per item, without orch.
# Usage: baseline.sh REPO WORKTREES FIRST LAST PORT (items FIRST to LAST)
set -eu
repo=$1; wts=$2; first=$3; last=$4; port=$5
export GIT_AUTHOR_NAME=bench GIT_AUTHOR_EMAIL=bench@localhost GIT_COMMITTER_NAME=bench GIT_COMMITTER_EMAIL=bench@localhost
i=$first
while [ "$i" -le "$last" ]; do
  wt="$wts/B-$i"
  git -C "$repo" worktree add -q -b "base/B-$i" "$wt" main
  for stage in analysis architecture development review qa; do
    # The files the bench's scripted agents write (kit/bench/scenario.toml), at the same paths.
    doc="$wt/docs/work-items/B-$i"
    case $stage in
      analysis) mkdir -p "$doc"; echo "---" > "$doc/01-analysis.md" ;;
      architecture) mkdir -p "$doc"; echo "---" > "$doc/02-design.md" ;;
      development)
        mkdir -p "$doc" "$wt/changes" "$wt/docs/changes"
        echo "change of B-$i" > "$wt/changes/B-$i.txt"
        echo "# B-$i" > "$wt/docs/changes/B-$i.md"
        echo "---" > "$doc/03-dev-notes.md" ;;
      review) mkdir -p "$doc"; echo "---" > "$doc/04-review.md" ;;
      qa) mkdir -p "$doc"; echo "---" > "$doc/05-test-report.md" ;;
    esac
    true   # the agent process
    git -C "$wt" add -A
    git -C "$wt" commit -qm "B-$i: $stage"
  done
  true     # the test command
  for env in staging prod; do
    PORT=$port python3 "$wt/app.py" & pid=$!
    until curl -fsS "http://127.0.0.1:$port/healthz" >/dev/null 2>&1; do sleep 0.02; done
    kill "$pid"; wait "$pid" 2>/dev/null || true
  done
  git -C "$repo" merge -q --no-ff --no-edit "base/B-$i"
  git -C "$repo" worktree remove --force "$wt"
  i=$((i + 1))
done
