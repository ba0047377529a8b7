"""pyproject.toml is the one place dependencies are declared; environment.yml mirrors it."""
import tomllib

import yaml


def test_environment_yml_mirrors_pyproject(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    declared = list(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        declared += extra
    environment = yaml.safe_load((root / "environment.yml").read_text())
    deps = environment["dependencies"]
    assert "pip" in deps and deps.index("pip") < next(i for i, d in enumerate(deps) if isinstance(d, dict))
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    assert sorted(p for p in pip_section if p != "-e .") == sorted(declared)
    assert "-e ." in pip_section


def test_jupyter_book_is_pinned_to_1x(root):
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    assert "jupyter-book>=1.0.4,<2" in project["optional-dependencies"]["book"]
