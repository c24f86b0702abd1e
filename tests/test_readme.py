"""The README's Python examples run verbatim, in order, in one namespace (as a reader would).

The first two blocks (the tour and ``certify``) run in ``make test``; the CNN and deep parallel
examples take minutes and run with the slow tests; the torch.distributed block needs a launcher
(torchrun) and is exercised by tests/test_distributed.py instead.
"""

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def _run(upto: int) -> dict:
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for code in BLOCKS[:upto]:
            exec(compile(code, str(README), "exec"), ns)  # noqa: S102 - our own README
    return ns


def test_readme_has_the_expected_blocks():
    assert len(BLOCKS) == 5
    assert "ConvexReLURegressor(random_state=0)" in BLOCKS[0]
    assert "cn.certify(" in BLOCKS[1]
    assert "init_process_group" in BLOCKS[4]


def test_readme_tour_and_certify_run_verbatim():
    ns = _run(2)
    reg = ns["reg"]
    assert reg.certificate_.primal >= reg.certificate_.dual
    assert ns["cert"].primal >= ns["cert"].dual


@pytest.mark.slow
def test_readme_cnn_and_parallel_examples_run_verbatim():
    ns = _run(4)
    assert ns["clf"].score(ns["images"][1000:], ns["y"][1000:]) > 0.8


def test_readme_names_only_tests_that_exist():
    """The papers' table cites the tests that check each system: each must exist."""
    text = README.read_text()
    text = text[text.index("## The papers' systems"):text.index("## Layout")]
    cited = set(re.findall(r"`(?:test_[a-z0-9_]+\.py::)?(test_[a-z0-9_]+)`", text))
    cited |= set(re.findall(r"::(test_[a-z0-9_]+)", text))
    defined = set()
    for f in (Path(__file__).parent).glob("test_*.py"):
        defined |= set(re.findall(r"^def (test_[a-z0-9_]+)\(", f.read_text(), re.M))
    assert len(cited) >= 20
    assert cited - defined == set()
