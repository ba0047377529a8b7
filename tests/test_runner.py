"""`python -m reprolib run`: bad parameters exit 2 with one line, before anything executes."""
import os
import subprocess
import sys

import pytest

CHAPTER = "notebooks/00_evaluation.py"


def run_cli(root, *args):
    return subprocess.run([sys.executable, "-m", "reprolib", "run", *args], cwd=root,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("args, fragment", [
    (["-p", "dataset=imagenet"], "parameter 'dataset': must be one of digits, mnist5k"),
    (["-p", "label_fraction=1.5"], "parameter 'label_fraction'"),
    (["-p", "n_clusters=1"], "parameter 'n_clusters': must be an integer >= 2"),
    (["-p", "learning_rate=0.1"], "parameter 'learning_rate': unknown parameter"),
    (["--profile", "huge"], "parameter 'profile': must be one of smoke, book, paper"),
    (["-p", "seed"], "expected name=value"),
])
def test_bad_parameters_exit_2_with_one_line(root, tmp_path, args, fragment):
    out = tmp_path / "out"
    done = run_cli(root, CHAPTER, "--out", str(out), *args)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and fragment in lines[0]
    assert not (out / "results.json").exists()


def test_a_label_fraction_outside_the_unit_interval_is_refused_for_chapters_with_labels(root, tmp_path):
    from reprolib.book import chapters
    labelled = [c for c in chapters(root) if "label_fraction" in c.read_text()]
    for chapter in labelled:
        done = run_cli(root, str(chapter.relative_to(root)), "-p", "label_fraction=0", "--out", str(tmp_path))
        assert done.returncode == 2 and "label_fraction" in done.stderr


def test_negative_epochs_are_refused(root, tmp_path):
    from reprolib.book import chapters
    with_epochs = [c for c in chapters(root) if "_epochs = None" in c.read_text()]
    for chapter in with_epochs:
        name = next(line.split("=")[0].strip() for line in chapter.read_text().splitlines()
                    if line.split("=")[0].strip().endswith("epochs") and "= None" in line)
        done = run_cli(root, str(chapter.relative_to(root)), "-p", f"{name}=-1", "--out", str(tmp_path))
        assert done.returncode == 2 and name in done.stderr


def test_missing_notebook_exits_2(root):
    done = run_cli(root, "notebooks/nope.py")
    assert done.returncode == 2 and "no notebook" in done.stderr


def test_output_dir_is_relative_inside_the_repository_so_the_book_shows_no_local_paths(root):
    from pathlib import Path
    from reprolib.runner import output_dir_for
    chapter = root / "notebooks" / "00_evaluation.py"
    assert output_dir_for(chapter, root / "_build" / "runs" / "x") == str(Path("..") / "_build" / "runs" / "x")
    assert output_dir_for(chapter, Path("/tmp/elsewhere")) == "/tmp/elsewhere"


def test_a_chapters_own_parameter_check_exits_2_with_the_message(root, tmp_path):
    # Chapter 2 refuses image sizes Table 1 has no network for, in its first cells (STL-10: 96 x 96)
    done = run_cli(root, "notebooks/02_dcae.py", "--profile", "smoke", "-p", "dataset=stl10", "--out", str(tmp_path))
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert errors == ["error: parameter 'dataset': stl10 has 96-pixel images; Table 1's DCAE takes sides 28, 16, 32, 8"]
    assert not (tmp_path / "results.json").exists()


class FlakyPapermill:
    """Stands in for papermill.execute_notebook: raises `errors` in turn, then succeeds."""

    def __init__(self, *errors):
        self.errors, self.calls = list(errors), 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)


def test_a_kernel_that_dies_while_starting_is_started_again(monkeypatch, tmp_path):
    import papermill
    from reprolib import runner
    died = RuntimeError(runner.KERNEL_DIED)
    flaky = FlakyPapermill(died, died)
    monkeypatch.setattr(papermill, "execute_notebook", flaky)
    runner.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {}, tmp_path)
    assert flaky.calls == 3


def test_a_kernel_that_keeps_dying_or_another_error_is_raised(monkeypatch, tmp_path):
    import papermill
    from reprolib import runner
    always = FlakyPapermill(*[RuntimeError(runner.KERNEL_DIED)] * runner.KERNEL_START_ATTEMPTS)
    monkeypatch.setattr(papermill, "execute_notebook", always)
    with pytest.raises(RuntimeError, match=runner.KERNEL_DIED):
        runner.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {}, tmp_path)
    assert always.calls == runner.KERNEL_START_ATTEMPTS
    other = FlakyPapermill(RuntimeError("a cell failed"))
    monkeypatch.setattr(papermill, "execute_notebook", other)
    with pytest.raises(RuntimeError, match="a cell failed"):
        runner.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {}, tmp_path)
    assert other.calls == 1


@pytest.mark.skipif(os.name != "posix", reason="Unix-domain sockets are POSIX only; elsewhere the kernel uses TCP")
def test_the_kernel_talks_over_private_sockets_not_tcp(tmp_path, capfd):
    import nbformat
    from reprolib import runner
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "from ipykernel.kernelapp import IPKernelApp\nprint(IPKernelApp.instance().transport)")])
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(notebook, tmp_path / "in.ipynb")
    runner.execute_notebook(tmp_path / "in.ipynb", tmp_path / "out.ipynb", {}, tmp_path)
    printed = "".join(o.get("text", "") for o in nbformat.read(tmp_path / "out.ipynb", 4).cells[0].outputs)
    assert printed.strip() == "ipc"                              # the kernel's own transport
    assert "without encryption" not in capfd.readouterr().err    # ipykernel's TCP warning is gone
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ipynb", "out.ipynb"]  # no socket files left behind
