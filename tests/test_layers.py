"""The package's layering: data -> patterns -> program -> solver -> pipeline -> estimator.

Every ``from convexnn... import`` (module level or inside a function) is checked: a module may
import only from its own layer or a lower one. The few upward imports left are named below with
the reason; the test fails on any new one, and on an allowed one that has gone (so the list
cannot go stale)."""

import ast
from pathlib import Path

import convexnn

ROOT = Path(convexnn.__file__).parent
#: module or package below ``convexnn`` -> layer (lower may not import higher); the longest
#: dotted prefix named here decides. networks sits above patterns because the CNN containers'
#: forward pass uses its pooling windows. certificates.global_ (certify any network) runs the
#: exact copositive solve of formulations/, so it sits with the pipelines while the Certificate
#: record it extends stays at the bottom (certificates/__init__ does not import global_).
LAYER = {"ops": 0, "_validation": 0, "losses": 1, "certificates": 1, "model_io": 1,
         "patterns": 2, "networks": 3, "solvers": 3, "results": 3, "formulations": 4,
         "pipelines": 5, "certificates.global_": 5, "certificates.high_rank": 5,
         "distributed": 5, "estimators": 6, "cli": 7,
         "__init__": 7}
#: (importer, imported) pairs still going upward, each lazy (inside a function)
ALLOWED = {
    # old import paths kept working: the drivers moved up to pipelines/
    ("convexnn.formulations.cnn", "convexnn.pipelines.cnn"),
    ("convexnn.formulations.parallel", "convexnn.pipelines"),
}


def _top(module: str) -> str:
    """The LAYER key of a module: its longest dotted prefix below ``convexnn`` named in LAYER."""
    parts = module.split(".")[1:] or ["__init__"]
    for k in range(len(parts), 1, -1):
        if ".".join(parts[:k]) in LAYER:
            return ".".join(parts[:k])
    return parts[0]


def _imports():
    for f in ROOT.rglob("*.py"):
        parts = list(f.relative_to(ROOT.parent).with_suffix("").parts)
        pkg = parts[:-1]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        me = ".".join(parts)
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level:
                base = ".".join(pkg[:len(pkg) - node.level + 1])
                target = base + ("." + node.module if node.module else "")
            else:
                target = node.module or ""
            if not target.startswith("convexnn"):
                continue
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            for t in names:
                yield me, t


def test_no_module_imports_a_higher_layer():
    upward = set()
    for me, target in _imports():
        a, b = _top(me), _top(target)
        assert a in LAYER and b in LAYER, f"{me} or {target}: add its layer to LAYER"
        if LAYER[b] > LAYER[a]:
            upward.add((me, target))
    assert upward - ALLOWED == set(), f"upward imports: {sorted(upward - ALLOWED)}"
    assert ALLOWED - upward == set(), f"gone, remove from ALLOWED: {sorted(ALLOWED - upward)}"


def test_modules_stay_within_the_size_guide():
    sizes = {str(f.relative_to(ROOT)): len(f.read_text().splitlines())
             for f in ROOT.rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > 420} == {}
