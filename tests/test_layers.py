"""The package's layering: data -> patterns -> program -> solver -> pipeline -> estimator.

Every ``from convexnn... import`` (module level or inside a function) is checked: a module may
import only from its own layer or a lower one. The few upward imports left are named below with
the reason; the test fails on any new one, and on an allowed one that has gone (so the list
cannot go stale)."""

import ast
from pathlib import Path

import convexnn

ROOT = Path(convexnn.__file__).parent
#: top-level module or package -> layer (lower may not import higher); networks_cnn shares
#: the patterns layer because its forward pass extracts patches
LAYER = {"ops": 0, "_validation": 0, "losses": 1, "certificates": 1, "networks": 1,
         "networks_cnn": 2, "networks_parallel": 1, "model_io": 1, "patches": 2,
         "patterns": 2, "arrangements": 2, "solvers": 3, "results": 3, "formulations": 4,
         "pipelines": 5, "certify": 5, "distributed": 5, "estimators": 6, "cli": 7,
         "__init__": 7}
#: (importer, imported) pairs still going upward, each lazy (inside a function)
ALLOWED = {
    # old import paths kept working: the drivers moved up to pipelines/
    ("convexnn.formulations.cnn", "convexnn.pipelines.cnn"),
    ("convexnn.formulations.parallel", "convexnn.pipelines"),
}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


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
