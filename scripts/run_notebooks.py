"""Execute the book's notebooks with papermill.

Each ``notebooks/<name>.py`` (Jupytext percent format, the tracked source) is
converted to ``<out>/<name>.ipynb`` and executed in place by papermill, with
``results_dir`` and ``scale`` injected and, for the paper and smoke scales, the
parameter file ``params/<scale>/<name>.yml``. The chapters run first, in name
order, and the scorecard last, so that it sees every chapter's results (it also
draws the front page's figure, ``../book/_generated/scorecard.png`` from the
folder it runs in, which book/intro.md shows).

The cell papermill injects (tag ``injected-parameters``) holds the builder's
absolute ``results_dir``; after execution it is tagged ``remove-cell`` so the
book does not show it (the ``parameters`` cell with the defaults stays). Where
the run replaced a default by another value (a parameter file, another scale),
a note after the parameters cell lists what the page was executed with.

    python scripts/run_notebooks.py --scale cpu                 # what `make book` runs
    python scripts/run_notebooks.py --scale paper --only 01_fisher_rao_length
"""
from __future__ import annotations

import argparse
import ast
import json
import sys
import time
from pathlib import Path

import jupytext
import nbformat
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


def parameter_defaults(nb) -> dict:
    """The literal value each name of the ``parameters`` cell is given (names with a non-literal value are left out)."""
    cell = next(c for c in nb.cells if c.cell_type == "code" and "parameters" in c.metadata.get("tags", []))
    defaults = {}
    for node in ast.parse(cell.source).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value = node.targets[0].id, node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value = node.target.id, node.value
        else:
            continue
        try:
            defaults[name] = ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError):
            continue
    return defaults


def _literal(value) -> str:
    """A parameter value as the parameters cell would write it."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_literal(v) for v in value) + "]"
    return repr(value)


def overrides_note(parameters: dict, defaults: dict, *, command: str, parameter_file: str | None) -> str | None:
    """The MyST note that says which defaults of the parameters cell the run replaced, or None if none
    (``results_dir`` is always injected, and never shown: it is the builder's path)."""
    changed = [(k, v) for k, v in parameters.items() if k != "results_dir" and (k not in defaults or defaults[k] != v)]
    changed.sort(key=lambda kv: kv[0] not in ("scale", "scales"))  # the scale first, then the file's values
    if not changed:
        return None
    where = f" (from `{parameter_file}`)" if parameter_file else ""
    values = ", ".join(f"`{k} = {_literal(v)}`" for k, v in changed)
    return (f"```{{note}}\nThis page was executed by `{command}`, which replaced these defaults of the cell "
            f"above{where}: {values}.\n```")


def finish_page(ipynb: Path, note: str | None) -> None:
    """Hide papermill's injected cell (``remove-cell``: input and output) and put ``note``, if any, after it."""
    nb = nbformat.read(ipynb, as_version=4)
    injected = [i for i, c in enumerate(nb.cells) if "injected-parameters" in c.metadata.get("tags", [])]
    for i in injected:
        tags = nb.cells[i].metadata.setdefault("tags", [])
        if "remove-cell" not in tags:
            tags.append("remove-cell")
    if note is not None and injected:
        nb.cells.insert(injected[-1] + 1, nbformat.v4.new_markdown_cell(note, metadata={"tags": ["parameters-note"]}))
    nbformat.write(nb, ipynb)


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
    parameter_file = None
    if scale != "cpu" and yml.exists():
        import yaml

        from_file = yaml.safe_load(yml.read_text()) or {}
        if not isinstance(from_file, dict):
            raise SystemExit(f"{yml}: must hold a mapping of parameter names to values")
        check_parameters(from_file, defined, str(yml))
        parameters = {**from_file, **parameters}
        parameter_file = f"{params_root.name}/{scale}/{yml.name}"
    check_parameters(parameters, defined, f"{name} (parameters injected by this script)")
    start = time.perf_counter()
    papermill.execute_notebook(
        str(ipynb), str(ipynb), parameters=parameters, kernel_name="python3", cwd=str(out), progress_bar=False,
    )
    note = overrides_note(parameters, parameter_defaults(nb), command=f"scripts/run_notebooks.py --scale {scale}",
                          parameter_file=parameter_file)
    finish_page(ipynb, note)
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
