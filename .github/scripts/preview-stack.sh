#!/usr/bin/env bash
# Prepares the checkout's stack for `pulumi preview` in the PR workflow (.github/workflows/preview.yml)
# and says what the preview compares with (issue 20.4: a preview against a fresh stack shows
# "create everything" and hides the day-2 diff a change would cause).
#
# The stack is the DEPLOYED one whenever it exists in the backend the workflow logs in to:
# Pulumi Cloud (PULUMI_ACCESS_TOKEN), or the backend your deployments use when
# PULUMI_BACKEND_URL is set (s3://..., gs://..., azblob://...; the CLI reads that variable).
# Only when the backend has no such stack is one created, and the note says so.
#
# Settings: with Pulumi Cloud, the operator's keys (SSH key, CIDRs) come from the Pulumi ESC
# environment PREVIEW_ENVIRONMENT, attached to the stack; with a backend of your own, from the
# committed stack file as it is (deploy from it too, with fixed CIDRs, never `auto`).
# Set-up: docs/pr-previews.md.
#
# Environment: STACK (dev, prod), PREVIEW_ENVIRONMENT (<project>/<environment>; required with
# Pulumi Cloud), PULUMI_BACKEND_URL (optional), STACK_DIR (where Pulumi.<stack>.yaml lives:
# Pulumi.yaml's stackConfigDir, default stacks), NOTE_FILE (where the note for the pull
# request's comment goes, default preview-note.md). Needs jq.
set -euo pipefail

: "${STACK:?STACK is not set}"
note_file=${NOTE_FILE:-preview-note.md}
backend=${PULUMI_BACKEND_URL:-}
if [[ -z $backend && -z ${PREVIEW_ENVIRONMENT:-} ]]; then
  echo "PREVIEW_ENVIRONMENT is empty: set the repository variable PULUMI_PREVIEW_ENVIRONMENT to the" \
    "Pulumi ESC environment holding the preview's sshAllowedCidrs, or PULUMI_BACKEND_URL to the" \
    "backend your deployments use (docs/pr-previews.md)." >&2
  exit 1
fi
stack_file="${STACK_DIR:-stacks}/Pulumi.${STACK}.yaml"
where=${backend%%\?*}
where=${where:-Pulumi Cloud}

if pulumi stack select --non-interactive "$STACK" 2>/dev/null; then
  resources=$(pulumi stack export --stack "$STACK" | jq '.deployment.resources // [] | length')
  # shellcheck disable=SC2016 # the backticks are Markdown
  printf 'Compared with the deployed stack `%s` in %s (%s resources in its state): what is shown is what `pulumi up` would change on it.\n' \
    "$STACK" "$where" "$resources" >"$note_file"
else
  pulumi stack select --create --non-interactive "$STACK"
  # shellcheck disable=SC2016 # the backticks are Markdown
  printf ':warning: %s has no stack `%s`: this preview shows what a first `pulumi up` would create, not what this change does to a running cluster. Point the workflow at the backend your deployments use (docs/pr-previews.md).\n' \
    "$where" "$STACK" >"$note_file"
fi

if [[ -n $backend ]]; then
  exit 0 # the committed stack file, as deployments use it
fi

# A value in the stack file wins over the same key from an environment (Pulumi ESC docs,
# reserved property pulumiConfig), and `sshAllowedCidrs: [auto]` would resolve the runner's
# address, a different one on every run. So the operator's keys are dropped from this
# checkout's copy of the stack file (never committed) and come from the environment alone.
for key in sshAllowedCidrs apiAllowedCidrs sshPublicKey sshPrivateKey keyName; do
  if [[ -f $stack_file ]] && grep -Eq "^[[:space:]]+k3s-ha:${key}:" "$stack_file"; then
    pulumi config rm --stack "$STACK" "$key"
  fi
done

pulumi config env add --stack "$STACK" --yes "$PREVIEW_ENVIRONMENT"
