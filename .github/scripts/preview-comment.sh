#!/usr/bin/env bash
# Posts the result of one stack's `pulumi preview` to the pull request, passed or failed, and
# edits that comment on later runs (one comment per stack). pulumi/actions comments only when
# the command succeeds (src/main.ts at v7.0.0 throws before handlePullRequestMessage), so a
# policy violation or a program error would otherwise never reach the pull request.
#
# Environment: GITHUB_REPOSITORY, PR_NUMBER, STACK, OUTCOME (the preview step's outcome:
# success, failure, skipped, cancelled), LOG_FILE (the preview's output), NOTE_FILE (what the
# preview compared with, from preview-stack.sh; optional), RUN_URL, GH_TOKEN (for gh). Needs gh
# and jq (both on GitHub's ubuntu runners).
set -euo pipefail

: "${GITHUB_REPOSITORY:?}" "${PR_NUMBER:?}" "${STACK:?}" "${OUTCOME:?}" "${LOG_FILE:?}" "${RUN_URL:?}"
# GitHub refuses comment bodies over 65536 characters; keep the end of a long log (the
# summary and any policy violation come last).
limit=${COMMENT_LOG_LIMIT:-60000}
marker="<!-- k3s-ha-preview:${STACK} -->"

case $OUTCOME in
  success) verdict=":white_check_mark: passed" ;;
  failure) verdict=":x: failed (policy violation or program error: see the output)" ;;
  *) verdict=":warning: did not run (${OUTCOME})" ;;
esac

body=$(mktemp)
trap 'rm -f "$body"' EXIT
{
  echo "$marker"
  echo "#### \`pulumi preview\` of stack \`${STACK}\`: ${verdict}"
  echo
  if [[ -n ${NOTE_FILE:-} && -s $NOTE_FILE ]]; then
    cat "$NOTE_FILE"
    echo
  fi
  if [[ -s $LOG_FILE ]]; then
    size=$(wc -c <"$LOG_FILE")
    if [[ $OUTCOME == success ]]; then echo "<details><summary>Output</summary>"; else echo "<details open><summary>Output</summary>"; fi
    echo
    echo '```'
    if ((size > limit)); then
      echo "[the first $((size - limit)) bytes are cut; the whole output is in the workflow run]"
      tail -c "$limit" "$LOG_FILE"
    else
      cat "$LOG_FILE"
    fi
    echo
    echo '```'
    echo "</details>"
  else
    echo "The job stopped before the preview produced any output; see the workflow run."
  fi
  echo
  echo "[Workflow run](${RUN_URL})"
} >"$body"

comments="repos/${GITHUB_REPOSITORY}/issues/${PR_NUMBER}/comments"
# --paginate prints one JSON array per page; jq reads them all.
existing=$(gh api --paginate "$comments" | jq -rn --arg marker "$marker" \
  '[inputs[] | select((.body // "") | startswith($marker)) | .id] | first // empty')
if [[ -n $existing ]]; then
  gh api --method PATCH "repos/${GITHUB_REPOSITORY}/issues/comments/${existing}" -F "body=@${body}" >/dev/null
else
  gh api --method POST "$comments" -F "body=@${body}" >/dev/null
fi
