"""The book's wiring: launch links resolve to committed paired notebooks in sync with their sources."""
import subprocess

import jupytext
import pytest
import yaml

from reprolib.book import ROOT, chapters, colab_link, toc_files

CHAPTERS = chapters()
#: Every page executed from a .py source gets a launch button, so each needs its paired notebook.
EXECUTED_PAGES = [ROOT / f"{page}.py" for page in toc_files() if (ROOT / f"{page}.py").exists()]


def _cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def _tracked(root, path):
    done = subprocess.run(["git", "ls-files", "--error-unmatch", str(path)], cwd=root,
                          capture_output=True, text=True)
    return done.returncode == 0


@pytest.mark.parametrize("chapter", EXECUTED_PAGES, ids=[c.stem for c in EXECUTED_PAGES])
def test_colab_link_points_to_a_committed_notebook_in_sync_with_its_source(root, chapter):
    page = str(chapter.relative_to(root).with_suffix(""))
    paired = chapter.with_suffix(".ipynb")
    config = yaml.safe_load((root / "_config.yml").read_text())
    link = colab_link(page)
    assert link.endswith(f"/blob/{config['repository']['branch']}/{page}.ipynb")
    assert paired.exists(), f"{paired} missing: run make sync"
    if (root / ".git").exists():
        assert _tracked(root, paired), f"{paired} is not committed"
    source, notebook = jupytext.read(chapter), jupytext.read(paired)
    assert _cells(source) == _cells(notebook), f"{paired} is out of sync with {chapter}: run make sync"
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.parametrize("chapter", EXECUTED_PAGES, ids=[c.stem for c in EXECUTED_PAGES])
def test_first_cell_installs_reprolib_from_the_repository_on_colab(root, chapter):
    config = yaml.safe_load((root / "_config.yml").read_text())
    first = next(c for c in jupytext.read(chapter).cells if c.cell_type == "code")
    assert '"google.colab" in sys.modules' in first.source
    assert f"git+{config['repository']['url']}" in first.source
    assert "parameters" not in first.metadata.get("tags", [])


def test_toc_pages_exist(root):
    for page in toc_files(root):
        assert any((root / f"{page}{suffix}").exists() for suffix in (".md", ".py")), page


def test_config_keeps_papermill_outputs_and_the_main_branch(root):
    config = yaml.safe_load((root / "_config.yml").read_text())
    assert config["execute"]["execute_notebooks"] == "off"
    assert config["repository"]["branch"] == "main"
    assert config["only_build_toc_files"] is True
