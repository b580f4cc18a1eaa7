"""Every Python block of README.md runs, and the README's commands are the ones CI runs."""

import pathlib
import re
import warnings

import pytest
from sklearn.exceptions import FitFailedWarning

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


#: Modules of the optional extras that a README block may import: module -> extra
#: (whose name is also the pytest marker that selects its tests). sklearn.callback is
#: scikit-learn >= 1.9's; its ProgressBar needs rich, which the block does not import.
OPTIONAL = {"skops": "persist", "skl2onnx": "onnx", "onnxruntime": "onnx",
            "dask_ml": "distributed", "sklearn.callback": "callbacks"}
#: What an extra's blocks need beyond the modules they import.
ALSO_NEEDED = {"callbacks": ["rich"]}


def _blocks(language):
    text = README.read_text(encoding="utf-8")
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def _optional_imports(code):
    """The optional modules a block imports (``OPTIONAL``'s names, or the package of
    a module imported from it)."""
    names = re.findall(r"^\s*(?:from|import)\s+([\w.]+)", code, flags=re.M)
    return sorted({module for name in names for module in OPTIONAL
                   if name == module or name.startswith(module + ".")})


def _python_blocks():
    # A block that needs an extra carries its marker, so that CI's run of the extras'
    # tests (pytest -m "<extra> or ...") runs it.
    return [pytest.param(i, marks=[getattr(pytest.mark, OPTIONAL[name])
                                   for name in _optional_imports(code)])
            for i, code in enumerate(_blocks("python"))]


@pytest.mark.parametrize("index", _python_blocks())
def test_readme_python_block_runs(index):
    code = _blocks("python")[index]
    if 'parallel_backend("dask")' in code:
        pytest.skip("run by tests/test_distributed.py (needs the 'distributed' extra)")
    for name in _optional_imports(code):
        extra = OPTIONAL[name]
        for module in [name] + ALSO_NEEDED.get(extra, []):
            pytest.importorskip(module, reason=f"needs the '{extra}' extra")
    # Each block stands alone, as a reader would paste it. A grid-search fit that fails
    # (an invalid network in the grid) would only warn: make it fail the test.
    with warnings.catch_warnings():
        warnings.simplefilter("error", FitFailedWarning)
        exec(compile(code, f"README.md python block {index}", "exec"),
             {"__name__": "__readme__"})


def test_readme_has_python_blocks():
    assert len(_blocks("python")) >= 1


def test_ci_runs_the_readme_test_command():
    commands = [line.strip() for block in _blocks("bash") for line in block.splitlines()]
    test_commands = [c for c in commands if "pytest" in c]
    assert test_commands, "README.md must give the command that runs the tests"
    ci_script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    ci_lines = [line.strip() for line in ci_script.splitlines()]
    for command in test_commands:
        assert command in ci_lines, f"{command!r} is in README.md but not in .ci/run"
