"""pyproject.toml: the k3s_ha package builds as a wheel that carries its node scripts, and works
when installed somewhere else, away from this repository's components/ directory."""

from __future__ import annotations

import ast
import importlib.metadata
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml
from k3s_ha.bootstrap import bundle

ROOT = Path(__file__).resolve().parents[2]
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


def _repository_copy(base: Path) -> Path:
    """The files a clone has (tracked, plus new files not yet committed and not ignored), so a
    build sees what `pip install git+...` sees and leaves nothing in the work tree."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    if listed.returncode != 0:
        pytest.skip(f"not a git checkout: {listed.stderr.strip()}")
    source = base / "src"
    for name in filter(None, listed.stdout.split("\0")):
        if (ROOT / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, source / name)
    return source


def _build(kind: str, source: Path, out: Path) -> Path:
    """setuptools' PEP 517 hook, as `python -m build` or pip call it (without isolation: the
    test environment has setuptools from requirements-dev.txt)."""
    pytest.importorskip("setuptools", reason="requirements-dev.txt installs setuptools for this build")
    code = f"import setuptools.build_meta as b; print(b.build_{kind}({str(out)!r}))"
    result = subprocess.run([sys.executable, "-c", code], cwd=source, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out / result.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    return _repository_copy(tmp_path_factory.mktemp("packaging"))


@pytest.fixture(scope="module")
def wheel(source) -> Path:
    return _build("wheel", source, source.parent / "dist")


@pytest.fixture(scope="module")
def sdist(source) -> Path:
    return _build("sdist", source, source.parent / "sdist")


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

    declared = [line.split(":", 1)[1].strip() for line in metadata.splitlines() if line.startswith("Requires-Dist:")]
    required = [d for d in declared if "extra ==" not in d]
    assert ranges(required) == ranges(_requirements())
    # The optional extra (k3s_ha.kubernetes_provider) has the range the tests install.
    extra = [Requirement(d) for d in declared if 'extra == "kubernetes"' in d]
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert [(r.name, str(r.specifier)) for r in extra] == [
        (r.name, str(r.specifier))
        for r in map(Requirement, [line for line in dev.splitlines() if line.startswith("pulumi-kubernetes")])
    ]


def test_installed_elsewhere_the_package_finds_its_scripts(wheel, tmp_path):
    target = tmp_path / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(target), str(wheel), cwd=tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    code = (
        "import k3s_ha, k3s_ha.bootstrap.bundle as b, k3s_ha.bootstrap.commands as c\n"
        "assert (b.SCRIPT_DIR / 'start-server.sh').is_file() and (b.SCRIPT_DIR / 'lib.sh').is_file()\n"
        "command = c.remote_command('start-server', {'K3S_VERSION': 'v1.36.4+k3s1'}, 60)\n"
        "assert c.parse_command(command)[0] == 'start-server' and b.digest() in command, command[-200:]\n"
        "print(b.digest())\n"
        "print(k3s_ha.__file__)\n"
    )
    # The installed copy, its dependencies from this interpreter, and not components/.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(target)
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    digest, location = result.stdout.split()
    assert Path(location).resolve().is_relative_to(target.resolve())
    # The same scripts at another path: the same bundle digest, so the same command text and
    # no diff (bundle.py; the engine compares the archive by hash alone).
    assert digest == bundle.digest()


# ---------------------------------------------------------------------------------------------
# Licence, metadata and the sdist


def _project() -> dict:
    tomllib = pytest.importorskip("tomllib", reason="tomllib is in the standard library from Python 3.11")
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _metadata(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()


def test_the_licence_is_apache_2_in_the_repository_the_metadata_and_the_wheel(wheel):
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text  # the full text, not a pointer to it
    project = _project()
    assert project["license"] == "Apache-2.0" and project["license-files"] == ["LICENSE"]
    # PEP 639: an SPDX expression replaces the License classifier; both would be refused.
    assert not [c for c in project["classifiers"] if c.startswith("License ::")]
    metadata = _metadata(wheel)
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    with zipfile.ZipFile(wheel) as archive:
        [shipped] = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        assert archive.read(shipped).decode() == text


def test_the_project_urls_point_into_one_repository_and_the_classifiers_match_requires_python(wheel):
    project = _project()
    urls = project["urls"]
    assert {"Homepage", "Source", "Issues", "Documentation"} <= set(urls)
    repository = urls["Source"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/k3s-ha", repository), repository
    assert all(url == repository or url.startswith((repository + "/", repository + "#")) for url in urls.values())
    metadata = _metadata(wheel).splitlines()
    assert {f"Project-URL: {name}, {url}" for name, url in urls.items()} <= set(metadata)

    from packaging.specifiers import SpecifierSet

    minimum = SpecifierSet(project["requires-python"])
    versions = [c.rsplit(" :: ", 1)[1] for c in project["classifiers"] if re.fullmatch(r".* :: 3\.\d+", c)]
    assert versions and all(v in minimum for v in versions)
    assert min(versions, key=lambda v: tuple(map(int, v.split(".")))) == project["requires-python"].removeprefix(">=")


def _third_party_imports() -> set[str]:
    """Top-level modules the package imports that are neither its own nor the standard library."""
    found: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name != "k3s_ha" and name not in sys.stdlib_module_names}


def test_every_module_the_package_imports_is_a_declared_dependency():
    """typing_extensions was imported but not declared: pulumi 3.237, which the range allows,
    does not pull it in, so an install could fail on import."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    declared = {canonicalize_name(Requirement(r).name) for r in _project()["dependencies"]}
    distributions = importlib.metadata.packages_distributions()
    imported = _third_party_imports()
    assert "typing_extensions" in imported and "pulumi" in imported  # the check sees imports
    missing = {
        module: distributions.get(module)
        for module in imported
        if not {canonicalize_name(d) for d in distributions.get(module, [module])} & declared
    }
    assert missing == {}, "imported but not in pyproject.toml's dependencies (and requirements.txt)"


def test_the_sdist_ships_no_test_suite_and_builds_the_same_wheel(sdist, wheel, tmp_path):
    """setuptools puts tests/test*.py into an sdist by default, without conftest.py, helpers or
    stand-ins: a test suite that cannot run. MANIFEST.in keeps tests out; the sdist still holds
    everything the wheel needs."""
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
        archive.extractall(tmp_path, filter="data")
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "examples/"))]
    assert not [n for n in names if n.endswith((".pyc", ".pyo"))]
    assert {"LICENSE", "README.md", "pyproject.toml", "components/k3s_ha/bootstrap/scripts/lib.sh"} <= set(names)

    [unpacked] = tmp_path.iterdir()
    rebuilt = _build("wheel", unpacked, tmp_path / "dist")
    assert sorted(zipfile.ZipFile(rebuilt).namelist()) == sorted(zipfile.ZipFile(wheel).namelist())


def test_the_package_version_is_k3s_ha_version(wheel):
    """One version (k3s_ha.__version__): the wheel's, the provider schema's (test_provider_schema)
    and the release tag's (docs/releasing.md)."""
    import k3s_ha

    assert "version" not in _project() and _project()["dynamic"] == ["version"]
    assert f"Version: {k3s_ha.__version__}" in _metadata(wheel).splitlines()
    assert wheel.name.startswith(f"k3s_ha-{k3s_ha.__version__}-")


# ---------------------------------------------------------------------------------------------
# Release tags (docs/releasing.md)


def release_tag_problems(tag: str) -> list[str]:
    """What is wrong with releasing the checkout as `tag`: it must be v<k3s_ha.__version__>,
    and the policy pack must carry the same version."""
    import k3s_ha

    problems = []
    if not re.fullmatch(r"v\d+\.\d+\.\d+", tag):
        problems.append(f"{tag!r} is not a release tag vX.Y.Z")
    elif tag != f"v{k3s_ha.__version__}":
        problems.append(f"{tag} does not match k3s_ha.__version__ {k3s_ha.__version__} (components/k3s_ha/__init__.py)")
    policy = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())["version"]
    if str(policy) != k3s_ha.__version__:
        problems.append(f"policy/PulumiPolicy.yaml has version {policy}, not {k3s_ha.__version__}")
    return problems


def test_the_policy_pack_carries_the_package_version():
    import k3s_ha

    assert release_tag_problems(f"v{k3s_ha.__version__}") == []


def test_a_release_tag_must_name_the_package_version():
    import k3s_ha

    major, minor, patch = map(int, k3s_ha.__version__.split("."))
    assert release_tag_problems(f"v{major}.{minor}.{patch + 1}") == [
        f"v{major}.{minor}.{patch + 1} does not match k3s_ha.__version__ {k3s_ha.__version__} "
        "(components/k3s_ha/__init__.py)"
    ]
    assert release_tag_problems(k3s_ha.__version__) == [f"{k3s_ha.__version__!r} is not a release tag vX.Y.Z"]
    assert release_tag_problems("v1.0") and release_tag_problems("v1.0.0-rc1")


def test_the_release_tag_being_built():
    """The test workflow sets K3S_HA_RELEASE_TAG on a pushed tag vX.Y.Z (.github/workflows/test.yml)."""
    tag = os.environ.get("K3S_HA_RELEASE_TAG", "")
    if not tag:
        pytest.skip("not a release build (K3S_HA_RELEASE_TAG is empty)")
    assert release_tag_problems(tag) == []


def _pinned_versions() -> dict[str, list[str]]:
    """Concrete release pins (`...@v1.2.3`) in the README, the examples and the docs."""
    files = [ROOT / "README.md", *sorted((ROOT / "examples").rglob("*")), *sorted((ROOT / "docs").glob("*.md"))]
    found = {}
    for path in files:
        if path.is_file() and path.suffix in (".md", ".yaml", ".yml", ".txt", ".py", ".ts", ".toml"):
            pins = re.findall(r"@v\d+\.\d+\.\d+\b", path.read_text())
            if pins:
                found[str(path.relative_to(ROOT))] = pins
    return found


def test_no_document_pins_a_release_that_may_not_exist():
    """No tag exists until the first release, and a fresh clone may have none: documents show
    the form `@vX.Y.Z` (docs/releasing.md), never a concrete version."""
    assert _pinned_versions() == {}
