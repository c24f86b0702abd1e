"""Helpers shared by the benchmark scripts (run as ``python benchmarks/bench_<topic>.py``,
which puts this folder on ``sys.path``)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def tee_stdout(path: str | None) -> Callable[[], None]:
    """From now on print to stdout and also to the file ``path`` (None or "": stdout only);
    returns the function that restores stdout and closes the file."""
    if not path:
        return lambda: None
    out = open(path, "w")  # noqa: SIM115

    class Tee:
        def write(self, s):
            sys.__stdout__.write(s)
            out.write(s)

        def flush(self):
            sys.__stdout__.flush()
            out.flush()

    sys.stdout = Tee()

    def close() -> None:
        sys.stdout = sys.__stdout__
        out.close()

    return close


def print_and_save(text: str, path: str | None, end: str = "") -> None:
    """Print ``text``; given ``path``, also write it to that file, followed by ``end``."""
    print(text)
    if path:
        with open(path, "w") as fh:
            fh.write(text + end)
