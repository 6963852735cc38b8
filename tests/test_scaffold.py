"""`mmcore new-plugin NAME`: the package it writes installs (pip, offline, into a folder of its own,
so the test session's environment is untouched) and passes its own tests exactly as generated; a bad
name, a name already taken and an existing directory are usage errors (exit 2)."""
import os
import re
import subprocess
import sys

import pytest

from mmcore.cli import main

NAME = "scaffold_check"


def test_generated_package_installs_and_passes_its_own_tests(tmp_path, capsys):
    assert main(["new-plugin", NAME, "--dir", str(tmp_path)]) == 0
    package, site = tmp_path / NAME, tmp_path / "site"
    assert f"next: pip install -e \"{package}[test]\"" in capsys.readouterr().out
    install = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--no-index",
               "--target", str(site), str(package)]
    installed = subprocess.run(install, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MMCORE_")}  # every plugin loads, as for a user
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    tests = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=package, env=env,
                           capture_output=True, text=True, timeout=600)
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    passed = re.search(r"(\d+) passed", tests.stdout)
    assert passed and int(passed.group(1)) >= 10 and "failed" not in tests.stdout, tests.stdout[-2000:]


def test_generated_files_name_the_plugin(tmp_path):
    assert main(["new-plugin", NAME, "--dir", str(tmp_path)]) == 0
    root = tmp_path / NAME
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", f"src/mmcore_{NAME}/__init__.py", f"src/mmcore_{NAME}/balancer.py",
                     f"src/mmcore_{NAME}/plugin.py", f"src/mmcore_{NAME}/valuator.py", f"tests/test_{NAME}.py"]
    pyproject = (root / "pyproject.toml").read_text()
    assert 'name = "mmcore-scaffold-check"' in pyproject
    assert f'[project.entry-points.mmcore]\n{NAME} = "mmcore_{NAME}.plugin"' in pyproject
    assert "class ScaffoldCheckConfig" in (root / "src" / f"mmcore_{NAME}" / "balancer.py").read_text()
    assert "`$.path`" in (root / "README.md").read_text()


@pytest.mark.parametrize("name, message", [
    ("Grad-Blend", "use snake_case"),
    ("2fast", "use snake_case"),
    ("double__underscore", "use snake_case"),
    ("lambda", "is a Python keyword"),
    ("mmcore_thing", "leave out the 'mmcore' prefix"),
    ("shapley", "valuator kind 'shapley' is already registered by mmcore"),
    ("none", "balancer kind 'none' is already registered by mmcore"),
])
def test_bad_names_are_usage_errors(tmp_path, capsys, name, message):
    assert main(["new-plugin", name, "--dir", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing written


def test_existing_directory_is_a_usage_error(tmp_path, capsys):
    (tmp_path / NAME).mkdir()
    assert main(["new-plugin", NAME, "--dir", str(tmp_path)]) == 2
    assert f"{tmp_path / NAME} already exists" in capsys.readouterr().err
    assert not any((tmp_path / NAME).iterdir())
