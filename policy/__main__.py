"""k3s-ha policy pack: `pulumi preview --policy-pack policy` (the PR preview workflow does this).

Every policy is mandatory: a violation fails the preview or update. The rules themselves are
pure functions in k3s_rules.py; tests/engine/test_policy.py runs them on the project's own program.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from k3s_policies import ENFORCEMENT, PACK_NAME, POLICIES  # noqa: E402
from pulumi_policy import PolicyPack  # noqa: E402

PolicyPack(name=PACK_NAME, enforcement_level=ENFORCEMENT, policies=POLICIES)
