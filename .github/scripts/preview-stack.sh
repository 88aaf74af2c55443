#!/usr/bin/env bash
# Prepares the checkout's stack for `pulumi preview` in the PR workflow (.github/workflows/preview.yml):
# selects the stack in the Pulumi Cloud organization of PULUMI_ACCESS_TOKEN (creating it on the
# first run), and takes the operator's settings (SSH key, CIDRs) from the Pulumi ESC environment
# named by PREVIEW_ENVIRONMENT. Set-up: docs/pr-previews.md.
#
# Environment: STACK (dev, prod), PREVIEW_ENVIRONMENT (<project>/<environment>), STACK_DIR
# (where Pulumi.<stack>.yaml lives: Pulumi.yaml's stackConfigDir, default stacks).
set -euo pipefail

: "${STACK:?STACK is not set}"
if [[ -z ${PREVIEW_ENVIRONMENT:-} ]]; then
  echo "PREVIEW_ENVIRONMENT is empty: set the repository variable PULUMI_PREVIEW_ENVIRONMENT to the" \
    "Pulumi ESC environment holding the preview's sshAllowedCidrs (docs/pr-previews.md)." >&2
  exit 1
fi
stack_file="${STACK_DIR:-stacks}/Pulumi.${STACK}.yaml"

pulumi stack select --create --non-interactive "$STACK"

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
