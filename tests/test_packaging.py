"""pyproject.toml: the k3s_ha package builds as a wheel that carries its node scripts, and works
when installed somewhere else, away from this repository's components/ directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "components" / "k3s_ha"


def _requirements() -> list[str]:
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]


def _pip(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Built from a copy of the sources, so the build leaves nothing in the work tree."""
    pytest.importorskip("setuptools", reason="requirements-dev.txt installs setuptools for this build")
    base = tmp_path_factory.mktemp("packaging")
    source = base / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build")
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "components", source / "components", ignore=ignore)
    dist = base / "dist"
    _pip("wheel", "--no-deps", "--no-build-isolation", "--wheel-dir", str(dist), str(source), cwd=base)
    [built] = dist.glob("k3s_ha-*.whl")
    return built


def test_pyproject_dependencies_match_requirements_txt():
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["dependencies"] == _requirements()


def test_the_wheel_holds_every_module_and_node_script(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"k3s_ha/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.py")}
    scripts = {f"k3s_ha/{p.relative_to(PACKAGE).as_posix()}" for p in PACKAGE.rglob("*.sh")}
    assert {
        "k3s_ha/__init__.py",
        "k3s_ha/bootstrap/commands.py",
        "k3s_ha/bootstrap/scripts/lib.sh",
        "k3s_ha/bootstrap/scripts/start-server.sh",
        "k3s_ha/aws/cluster.py",
        "k3s_ha/bootstrap/steps/servers.py",
    } <= names
    assert modules <= names and scripts <= names
    # Nothing else of the repository: no tests, policy pack, program or stack files.
    assert {n.split("/")[0] for n in names} == {"k3s_ha", wheel.name.split("-py")[0] + ".dist-info"}


def test_the_wheel_declares_the_same_dependency_ranges(wheel):
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    from packaging.requirements import Requirement

    def ranges(specs):
        return {(r.name, r.specifier) for r in map(Requirement, specs)}

    required = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    assert ranges(required) == ranges(_requirements())


def test_installed_elsewhere_the_package_finds_its_scripts(wheel, tmp_path):
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import k3s_ha, k3s_ha.bootstrap.commands\n"
        "body = k3s_ha.bootstrap.commands.script_body('start-server')\n"
        "command = k3s_ha.bootstrap.commands.remote_command('start-server', {'K3S_VERSION': 'v1.36.4+k3s1'})\n"
        "assert body and command.endswith('k3s-ha-start-server'), command[-80:]\n"
        "print(k3s_ha.__file__)\n"
    )
    # The installed copy, its dependencies from this interpreter, and not components/.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).resolve().is_relative_to(target.resolve())
