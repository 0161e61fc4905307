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
    mkdir -p "$wt/docs/work-items/B-$i"
    echo "---" > "$wt/docs/work-items/B-$i/$stage.md"
    [ "$stage" = development ] && echo "change $i" > "$wt/changes-B-$i.txt"
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
