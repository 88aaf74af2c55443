"""Every snippet in the README and docs/ runs (issue 20.2): a copied snippet must work.

Python runs under the mock engine with the config it reads; shell goes through shellcheck;
YAML and JSON parse, and stack config keys exist in Pulumi.yaml; the TypeScript snippet names
only inputs and outputs the provider's schema has. (Shell snippets call pulumi, aws and ssh,
which do not exist here: shellcheck is how far they can be run.)"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest
import yaml
from support import engine
from support.helpers import PRIVATE_KEY

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\w*)\s*$")


def snippets(page: Path) -> list[tuple[str, int, str]]:
    """(language, line, text) of every fenced block, dedented (blocks inside list items)."""
    found, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        opened = FENCE.match(lines[i])
        if opened:
            indent, language = opened.groups()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            text = textwrap.dedent(
                "\n".join(line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end])
            )
            found.append((language, i + 1, text + "\n"))
            i = end
        i += 1
    return found


ALL = [(page.name, language, line, text) for page in PAGES for language, line, text in snippets(page)]


def _ids(kind: str) -> list:
    return [pytest.param(text, id=f"{name}:{line}") for name, language, line, text in ALL if language == kind]


def test_the_pages_have_snippets_of_every_kind_checked_here() -> None:
    kinds = {language for _, language, _, _ in ALL}
    assert {"bash", "python", "yaml", "json", "typescript"} <= kinds
    assert kinds - {"bash", "python", "yaml", "json", "typescript", ""} == set(), "a language no test checks"


@pytest.mark.parametrize("text", _ids("bash"))
def test_shell_snippets_pass_shellcheck(text: str, tmp_path: Path) -> None:
    shellcheck = shutil.which("shellcheck") or str(
        Path(engine.__file__).resolve().parents[2] / ".venv-test" / "bin" / "shellcheck"
    )
    script = tmp_path / "snippet.sh"
    script.write_text("#!/usr/bin/env bash\n" + text)
    # Placeholders such as <your-org> are for the reader to fill in: they parse as redirections,
    # which shellcheck accepts; only errors (a snippet that bash cannot run) fail.
    result = subprocess.run([shellcheck, "-S", "error", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("text", _ids("yaml"))
def test_yaml_snippets_parse_and_name_only_real_config_keys(text: str) -> None:
    document = yaml.safe_load(text)
    assert document
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    config = document.get("config", document) if isinstance(document, dict) else {}
    for key in config:
        if isinstance(key, str) and key.startswith("k3s-ha:"):
            assert key.removeprefix("k3s-ha:") in project["config"], key


@pytest.mark.parametrize("text", _ids("json"))
def test_json_snippets_parse(text: str) -> None:
    assert json.loads(text)


@pytest.mark.parametrize("text", _ids("python"))
def test_python_snippets_run_under_the_mock_engine(text: str, tmp_path: Path) -> None:
    program = tmp_path / "__main__.py"
    program.write_text(text)
    config = {
        "sshPrivateKey": PRIVATE_KEY,
        "sshPublicKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIstandin test@k3s-ha",
        "aws:region": "eu-west-1",
    }
    run = engine.run(engine.program_file(program), config, ("sshPrivateKey",), project="snippet")
    assert any(r.type.startswith("k3s-ha:index:") for r in run.registrations)
    assert any(r.type == "command:remote:Command" for r in run.registrations)


@pytest.mark.parametrize("text", _ids("typescript"))
def test_typescript_snippets_name_only_what_the_schema_has(text: str) -> None:
    from support import component_schema  # puts provider/ on the path, as the schema tests do

    schema = json.loads(component_schema.K3sHaProvider().schema)
    args = re.search(r"const (\w+) = new k3sha\.(K3sCluster|K3sBootstrap)\(\"[^\"]+\", \{(.*?)\n\}\);", text, re.S)
    assert args is not None
    variable, component, body = args.groups()
    resource = schema["resources"][f"k3s-ha:index:{component}"]
    # K3sBootstrap's inputs nest (servers[].name, ssh.user): a key at any depth must be an input
    # or a property of one of the package's object types.
    names = set(resource["inputProperties"])
    if component == "K3sBootstrap":
        names |= {n for spec in schema.get("types", {}).values() for n in spec["properties"]}
    given = re.findall(r"^\s*(\w+):", body, re.M) + re.findall(r"\{ (\w+):", body)
    assert given and set(given) <= names, set(given) - names
    used = set(re.findall(rf"\b{variable}\.(\w+)", text))
    assert used and used <= set(resource["properties"])
