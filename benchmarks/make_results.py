"""Assemble benchmarks/RESULTS.md from the per-topic result files in benchmarks/results/.

Each bench_<topic>.py script writes benchmarks/results/<topic>.md with its measured numbers
and the exact command; this script only concatenates them under a common header.
Run: python benchmarks/make_results.py
"""

from pathlib import Path

ORDER = ["defaults", "cv", "speed", "peers", "distributed", "two_layer", "exact", "copositive",
         "cnn", "parallel", "sdp"]
TITLES = {
    "defaults": ("Issues 18 and 19 — two-layer estimators at their defaults vs scikit-learn; "
                 "the default ReLU fit vs Adam"),
    "two_layer": ("Issue 2 — two-layer convex programs: solver time vs CVXPY+Clarabel, "
                  "objective vs Adam"),
    "speed": "Issue 20 — speed and scale: solver selection, memory, regularisation path",
    "cv": "Issue 20 — reg by cross-validation: ConvexReLU*CV vs GridSearchCV",
    "peers": "Issue 20 — the gated program and its path vs scnn and adelie",
    "distributed": "Issue 20 — 1 vs 2 processes (torch.distributed): gated program, ReLU descent",
    "exact": "Issue 21 — exact column generation vs CVXPY + Clarabel; pruning",
    "copositive": "Issue 3 — copositive programs: exact global optimum vs Adam vs relaxation",
    "cnn": "Issue 4 — convex CNNs on digits",
    "parallel": "Issue 5 — path-regularised deep parallel networks",
    "sdp": "Issue 6 — completely positive program and its SDP relaxation",
}
HEADER = """# Benchmark results

Measured on the development machine: 2 CPU cores (shared with other jobs while these ran, so
absolute times are inflated and noisy; ratios are from side-by-side runs in the same process),
24 GB RAM, no GPU, torch 2.13 CPU, CVXPY with Clarabel and SCS. Each section gives the exact
command that produced it. Objective everywhere: loss summed over samples +
(reg/2)·||all weights||² (the papers' convention).
"""


def main() -> None:
    here = Path(__file__).resolve().parent
    parts = [HEADER]
    for topic in ORDER:
        f = here / "results" / f"{topic}.md"
        parts.append(f"\n---\n\n# {TITLES[topic]}\n")
        if f.exists():
            text = f.read_text().strip()
            lines = text.splitlines()
            if lines and lines[0].startswith("# "):  # demote the file's own title
                lines[0] = "#" + lines[0]
            parts.append("\n".join(lines) + "\n")
        else:
            parts.append("_Not measured yet._\n")
    (here / "RESULTS.md").write_text("\n".join(parts))
    print(f"wrote {here / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
