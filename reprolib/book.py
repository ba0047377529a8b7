"""``python -m reprolib book``: execute every chapter, then render the HTML book.

1. Every page of ``_toc.yml`` whose source is a jupytext ``.py`` is executed once by papermill:
   chapters (``notebooks/``) through :func:`reprolib.runner.execute` at the chosen profile (their
   results.json lands in ``_build/runs/<chapter>``), other pages (``book/datasets.py``) as they are.
   A page whose source, reprolib and profile are unchanged since its last run is not run again.
2. A staging folder ``_build/src`` gets the book's config, Markdown pages and the *executed*
   notebooks at the same paths as their sources (``notebooks/01_clusternet.ipynb``), so the
   "Open in Colab" button points at the paired notebook committed next to each ``.py``.
3. ``jupyter-book build`` renders the staging folder with warnings as errors into ``_build/html``,
   and every chapter's page is checked for its Colab link.
"""
from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "_build"
STAGE = BUILD / "src"
RUNS = BUILD / "runs"
COPIED = ("_config.yml", "_toc.yml", "references.bib")
CHAPTER_BUDGET_S = {"smoke": 60, "book": 360}  # CHAPTER_CONTRACT point 4, on 2 CPU cores


def toc_files(root: Path = ROOT) -> list[str]:
    """Every page of the table of contents, as a path without suffix (e.g. 'notebooks/00_evaluation')."""
    toc = yaml.safe_load((root / "_toc.yml").read_text())
    pages = [toc["root"]]

    def walk(entries):
        for entry in entries or []:
            if "file" in entry:
                pages.append(entry["file"])
            walk(entry.get("sections"))
            walk(entry.get("chapters"))
            for part in entry.get("parts", []) or []:
                walk(part.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return pages


def chapters(root: Path = ROOT) -> list[Path]:
    """The chapter sources: toc pages under notebooks/ (percent-format .py files)."""
    return [root / f"{page}.py" for page in toc_files(root) if page.startswith("notebooks/")]


def _stamp(source: Path, profile: str) -> str:
    digest = hashlib.sha256(profile.encode())
    for path in [source, *sorted((ROOT / "reprolib").glob("*.py"))]:
        digest.update(path.read_bytes())
    return digest.hexdigest()


def _run_page(source: Path, profile: str, force: bool) -> Path:
    """Execute one page unless its last run is current; return the executed .ipynb."""
    from .runner import execute, execute_notebook, output_dir_for, to_ipynb
    out = RUNS / source.stem
    executed, stamp_file = out / f"{source.stem}.ipynb", out / "stamp"
    stamp = _stamp(source, profile)
    if not force and executed.exists() and stamp_file.exists() and stamp_file.read_text() == stamp:
        print(f"[book] {source.relative_to(ROOT)}: unchanged, reusing {executed.relative_to(ROOT)}")
        return executed
    started = time.perf_counter()
    print(f"[book] executing {source.relative_to(ROOT)} at profile {profile} ...", flush=True)
    stamp_file.unlink(missing_ok=True)
    if source.parent.name == "notebooks":
        execute(source, profile, {}, out)
    else:
        out.mkdir(parents=True, exist_ok=True)
        ipynb = to_ipynb(source, out)
        execute_notebook(ipynb, executed, {"output_dir": output_dir_for(source, out)}, source.parent)
    stamp_file.write_text(stamp)
    elapsed = time.perf_counter() - started
    budget = CHAPTER_BUDGET_S.get(profile) if source.parent.name == "notebooks" else None
    print(f"[book] {source.relative_to(ROOT)} done in {elapsed:.0f} s"
          + (f" (chapter budget {budget} s{': OVER' if elapsed > budget else ''})" if budget else ""), flush=True)
    return executed


def stage(executed: dict[str, Path]) -> None:
    """Fill _build/src with the config, Markdown pages, figures and executed notebooks."""
    if STAGE.exists():
        shutil.rmtree(STAGE)
    STAGE.mkdir(parents=True)
    for name in COPIED:
        shutil.copy2(ROOT / name, STAGE / name)
    for page in toc_files():
        target = STAGE / page
        target.parent.mkdir(parents=True, exist_ok=True)
        if page in executed:
            shutil.copy2(executed[page], target.with_suffix(".ipynb"))
        else:
            shutil.copy2(ROOT / f"{page}.md", target.with_suffix(".md"))
    for asset in (ROOT / "book").glob("*.png"):
        shutil.copy2(asset, STAGE / "book" / asset.name)


def colab_link(page: str) -> str:
    """The Colab URL the book's launch button gives `page` (sphinx-book-theme's rule)."""
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    repo = config["repository"]
    org_repo = repo["url"].removeprefix("https://github.com/").strip("/")
    book = (repo.get("path_to_book") or "").strip("/")
    path = f"{book}/{page}.ipynb" if book else f"{page}.ipynb"
    return f"{config['launch_buttons']['colab_url']}/github/{org_repo}/blob/{repo['branch']}/{path}"


def check_colab_links(html: Path) -> None:
    """Every executed page of the built book links to Colab at its paired notebook."""
    for page in toc_files():
        if not (ROOT / f"{page}.py").exists():
            continue
        text = (html / f"{page}.html").read_text()
        if colab_link(page) not in text:
            raise SystemExit(f"[book] {page}.html lacks the Colab link {colab_link(page)}")


def build(profile: str = "book", force: bool = False) -> Path:
    executed = {}
    for page in toc_files():
        source = ROOT / f"{page}.py"
        if source.exists():
            executed[page] = _run_page(source, profile, force)
    stage(executed)
    command = [str(Path(sys.executable).parent / "jupyter-book"), "build", str(STAGE),
               "--path-output", str(BUILD / "book"), "-W", "-n", "--keep-going"]
    print("[book] " + " ".join(command), flush=True)
    subprocess.run(command, check=True)
    html = BUILD / "book" / "_build" / "html"
    check_colab_links(html)
    print(f"[book] done: open {html / 'index.html'}")
    return html


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m reprolib book", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="book", help="profile the chapters run at (default book)")
    parser.add_argument("--force", action="store_true", help="re-execute every page")
    args = parser.parse_args(argv)
    try:
        build(args.profile, args.force)
    except subprocess.CalledProcessError as error:
        print(f"[book] jupyter-book failed with status {error.returncode}", file=sys.stderr)
        return 1
    return 0

