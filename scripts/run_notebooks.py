"""Execute the book's notebooks with papermill.

Each ``notebooks/<name>.py`` (Jupytext percent format, the tracked source) is
converted to ``<out>/<name>.ipynb`` and executed in place by papermill, with
``results_dir`` and ``scale`` injected and, for the paper and smoke scales, the
parameter file ``params/<scale>/<name>.yml``. The chapters run first, in name
order, and the scorecard last, so that it sees every chapter's results.

    python scripts/run_notebooks.py --scale cpu                 # what `make book` runs
    python scripts/run_notebooks.py --scale paper --only 01_fisher_rao_length
"""
from __future__ import annotations

import argparse
import ast
import sys
import time
from pathlib import Path

import jupytext
import papermill

ROOT = Path(__file__).resolve().parent.parent
SCALES = ("cpu", "paper", "smoke")
SCORECARD = "scorecard"


def notebook_names(src: Path) -> list[str]:
    names = sorted(p.stem for p in src.glob("*.py") if p.stem != SCORECARD)
    return names + [SCORECARD] if (src / f"{SCORECARD}.py").exists() else names


def parameter_names(nb) -> set[str]:
    """The names the notebook's ``parameters`` cell assigns (papermill's injected cell overrides exactly these)."""
    cells = [c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"a notebook needs exactly one cell tagged 'parameters'; found {len(cells)}")
    names = set()
    for node in ast.parse(cells[0].source).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) else []
        names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names


def check_parameters(parameters: dict, defined: set[str], where: str) -> None:
    """Refuse a parameter the notebook does not define: papermill would inject it, the notebook would
    never read it, and the run would silently use the default (a typo in a paper-scale file, say)."""
    unknown = sorted(set(parameters) - defined)
    if unknown:
        raise SystemExit(f"{where}: unknown parameter(s) {unknown}; the notebook's parameters cell defines "
                         f"{sorted(defined)}")


def run(name: str, *, src: Path, out: Path, scale: str, results_dir: Path, params_root: Path) -> float:
    nb = jupytext.read(src / f"{name}.py")
    defined = parameter_names(nb)
    ipynb = out / f"{name}.ipynb"
    jupytext.write(nb, ipynb)
    parameters = {"results_dir": str(results_dir)}
    if name == SCORECARD:
        parameters["scales"] = [scale, "paper"] if scale != "paper" else ["cpu", "paper"]
    else:
        parameters["scale"] = scale
    yml = params_root / scale / f"{name}.yml"
    if scale != "cpu" and yml.exists():
        import yaml

        from_file = yaml.safe_load(yml.read_text()) or {}
        if not isinstance(from_file, dict):
            raise SystemExit(f"{yml}: must hold a mapping of parameter names to values")
        check_parameters(from_file, defined, str(yml))
        parameters = {**from_file, **parameters}
    check_parameters(parameters, defined, f"{name} (parameters injected by this script)")
    start = time.perf_counter()
    papermill.execute_notebook(
        str(ipynb), str(ipynb), parameters=parameters, kernel_name="python3", cwd=str(out), progress_bar=False,
    )
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", choices=SCALES, default="cpu")
    ap.add_argument("--src", type=Path, default=ROOT / "notebooks", help="folder of the .py sources")
    ap.add_argument("--out", type=Path, default=None, help="folder for the executed .ipynb (default: --src)")
    ap.add_argument("--results-dir", type=Path, default=ROOT / "results")
    ap.add_argument("--params", type=Path, default=ROOT / "params", help="folder of <scale>/<notebook>.yml")
    ap.add_argument("--only", nargs="*", default=None, help="notebook names to run (default: all)")
    args = ap.parse_args(argv)
    out = args.out or args.src
    out.mkdir(parents=True, exist_ok=True)
    names = notebook_names(args.src)
    if args.only:
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            ap.error(f"--only: unknown notebook(s) {unknown}; valid: {names}")
        names = [n for n in names if n in args.only]
    for name in names:
        print(f"executing {name} at the {args.scale} scale ...", flush=True)
        seconds = run(name, src=args.src, out=out, scale=args.scale, results_dir=args.results_dir.resolve(),
                      params_root=args.params)
        print(f"  done in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
