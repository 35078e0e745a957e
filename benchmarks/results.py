"""Regenerate the RESULTS tables: ``make results`` (every table), or ``--only ID`` / ``--list`` / ``--status``.

Each table in ``benchmarks/RESULTS*.md`` that a script produces sits between two markers::

    <!-- results:ID -->
    ...what the script printed, under a line naming the command and the code fingerprint...
    <!-- /results:ID -->

This script runs the table's command (from the repository root, with this interpreter) and replaces
what is between the markers with its standard output, written atomically as soon as that table is
done. The first line of every block records the command and the **code fingerprint**: a hash of
the code the table runs (the benchmark script and every ``src/robustnic`` module it can import,
found statically: see :func:`table_modules`) and of the sha256 of the shipped weights it names. A
change elsewhere (the report, the CLI of another command, a model it does not use) leaves the table
current. A table whose recorded fingerprint equals the current one is up to date and is skipped, so
an interrupted ``make results`` resumes where it stopped; ``--force`` reruns it anyway.

Some tables need inputs that other commands make first (trained checkpoints under ``runs/``): their
``needs`` commands run before them (each resumable or skipped when its output exists).
Prose around the markers is written by hand and must not quote numbers that only a block holds.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
SOURCE = ROOT / "src" / "robustnic"


@dataclass(frozen=True)
class Table:
    """One generated block: its id, the RESULTS file holding it and the command that prints it."""

    id: str
    file: str
    command: tuple[str, ...]
    #: Commands that must have run first (they make inputs under runs/; each is resumable).
    needs: tuple[tuple[str, ...], ...] = field(default_factory=tuple)
    #: Rough CPU minutes on 2 cores (shown by --list; the order of runs is the registry's).
    minutes: int = 5
    #: Put the output in a fenced block of this language (for scripts that print JSON, not markdown).
    fence: str = ""
    #: The command writes the whole RESULTS file itself; the block then holds only the stamp line.
    writes_file: bool = False

    @property
    def script(self) -> Path | None:
        for part in self.command:
            if part.endswith(".py"):
                return ROOT / part
        return None


def _py(*args: str) -> tuple[str, ...]:
    return ("python", *args)


def _cli(*args: str) -> tuple[str, ...]:
    return _py("-m", "robustnic.cli.main", *args)


ZOO = "runs/zoo"
#: The Jacobian-regularised fine-tune of issue 17 (600 steps; the equal-time run adds "-1150").
JACOBIAN_RUN = "runs/finetune/hyperprior-small-q3-jacobian"
TABLES: list[Table] = [
    # RESULTS.md
    Table("rate-gap", "RESULTS.md", _py("benchmarks/rate_gap.py"), minutes=5),
    Table("rate-gap-cheng2020", "RESULTS.md",
          _py("benchmarks/rate_gap.py", "--model", f"{ZOO}/cheng-anchor-q2/model.pt", "--model",
              f"{ZOO}/cheng-attn-q2/model.pt", "--model", "joint-small:q3"),
          needs=tuple(step for arch, run in (("cheng2020-anchor", "cheng-anchor-q2"), ("cheng2020-attn", "cheng-attn-q2"))
                      for step in (_cli("train", "--arch", arch, "--N", "64", "--metric", "mse", "--lmbda", "0.0067",
                                        "--steps", "4000", "--batch-size", "8", "--patch-size", "128", "--lr", "0.0003",
                                        "--lr-drop", "0.8:0.3", "--threads", "1", "--seed", "0", "--out", f"{ZOO}/{run}"),
                                   _cli("export", f"{ZOO}/{run}/last.pth.tar", "--out", f"{ZOO}/{run}/model.pt",
                                        "--scale-levels", "256"))),
          minutes=190),
    Table("cli-startup", "RESULTS.md", _py("benchmarks/cli_startup.py"), minutes=2),
    Table("eval-timing", "RESULTS.md", _py("benchmarks/eval_timing.py", "--repeats", "5"), minutes=10),
    Table("scale", "RESULTS.md", _py("benchmarks/scale.py"), minutes=5),
    Table("ddp", "RESULTS.md", _py("benchmarks/ddp_scale.py"), minutes=4),
    # RESULTS-attacks.md
    Table("attacks-all", "RESULTS-attacks.md",
          _py("benchmarks/attack_table.py", "--model", "hyperprior-small:q3", "--crop", "128"), minutes=30),
    Table("attacks-field", "RESULTS-attacks.md",
          _py("benchmarks/attack_table.py", "--model", "hyperprior-small:q3", "--crop", "128", "--methods", "paper",
              "madc", "ssah", "cadv", "korhonen", "wavelet", "noise", "shift"), minutes=20),
    Table("attacks-objectives", "RESULTS-attacks.md",
          _py("benchmarks/attack_table.py", "--model", "hyperprior-small:q3", "--crop", "128", "--methods", "paper",
              "pgd", "noise", "shift", "--objectives", "distortion", "added-noise", "rate", "rate-distortion"),
          minutes=20),
    Table("attacks-baselines", "RESULTS-attacks.md",
          _py("benchmarks/attack_table.py", "--model", "hyperprior-small:q3", "--crop", "128", "--methods", "noise", "shift"),
          minutes=2),
    Table("attacks-ste", "RESULTS-attacks.md",
          _py("benchmarks/attack_table.py", "--model", "hyperprior-small:q3", "--crop", "128", "--methods", "paper", "pgd",
              "--standin", "ste"), minutes=8),
    Table("attacks-step-cost", "RESULTS-attacks.md",
          _py("benchmarks/attack_speed.py", "--model", "hyperprior-small:q3", "--crop", "128", "--skip-damage",
              "--speed-steps", "100", "--repeats", "3"), minutes=5),
    Table("attacks-steps-to-reference", "RESULTS-attacks.md",
          _py("benchmarks/attack_speed.py", "--model", "hyperprior-small:q3", "--crop", "128"), minutes=25),
    # needs the peer installed: .venv/bin/pip install --no-deps tmla==0.1.1 ... (benchmarks/peer_tmla.py)
    Table("peer-tmla", "RESULTS-attacks.md",
          _py("benchmarks/peer_tmla.py", "--model", "hyperprior-small:q3", "--crop", "256"), minutes=12),
    Table("agnostic-ratio", "RESULTS-attacks.md", _py("benchmarks/agnostic_ratio.py", "--crop", "128"), minutes=4),
    Table("attacks-analyze", "RESULTS-attacks.md",
          _py("benchmarks/analyze_table.py", "-m", "hyperprior-small:q3", "--out", "runs/analyze-q3"), minutes=2),
    Table("attacks-analyze-100", "RESULTS-attacks.md",
          _py("benchmarks/analyze_table.py", "-m", "hyperprior-small:q3", "--steps", "100", "--out",
              "runs/analyze-q3-100"), minutes=3),
    Table("attacks-analyze-q8", "RESULTS-attacks.md",
          _py("benchmarks/analyze_table.py", "-m", "hyperprior-long:q8", "--out", "runs/analyze-q8"), minutes=2),
    # RESULTS-defenses.md
    Table("defenses", "RESULTS-defenses.md",
          _py("benchmarks/defense_table.py", "--steps", "50", "--crop", "128", "--jobs", "2"),
          needs=(_cli("finetune", "--model", "hyperprior-small:q3", "--steps", "1150", "--batch-size", "8",
                      "--patch-size", "128", "--lr", "0.0002", "--adv-fraction", "0", "--regularizer", "jacobian",
                      "--reg-weight", "10", "--seed", "0", "--threads", "1",
                      "--out", f"{JACOBIAN_RUN}-1150"),),
          minutes=120),
    Table("refine", "RESULTS-defenses.md", _py("benchmarks/refine_table.py"), minutes=20),
    Table("refine-steps", "RESULTS-defenses.md",
          _py("benchmarks/refine_table.py", "--clean-only", "refine:steps=1", "refine:steps=2", "refine:steps=5",
              "refine:steps=10", "refine"), minutes=8),
    Table("regularized-finetune", "RESULTS-defenses.md",
          _py("benchmarks/regularized_finetune.py", "--entry", "vanilla=hyperprior-small:q3",
              "--entry", "PGD-3 fine-tuned (shipped)=hyperprior-small-robust:q3",
              "--entry", f"jacobian fine-tuned, 600 steps={JACOBIAN_RUN}/last.pth.tar",
              "--entry", f"jacobian fine-tuned, 1150 steps={JACOBIAN_RUN}-1150/last.pth.tar"),
          needs=tuple(_cli("finetune", "--model", "hyperprior-small:q3", "--steps", str(steps), "--batch-size", "8",
                           "--patch-size", "128", "--lr", "0.0002", "--adv-fraction", "0", "--regularizer",
                           "jacobian", "--reg-weight", "10", "--seed", "0", "--threads", "1", "--out", out)
                      for steps, out in ((600, JACOBIAN_RUN), (1150, f"{JACOBIAN_RUN}-1150"))),
          minutes=15),
    Table("damage-floor", "RESULTS-defenses.md", _py("benchmarks/damage_floor.py", "--crop", "128"), minutes=2),
    Table("damage-floor-256", "RESULTS-defenses.md",
          _py("benchmarks/damage_floor.py", "--entry", "vanilla q8=hyperprior-long:q8",
              "--entry", "robust q8=hyperprior-long-robust:q8", "--crop", "256"), minutes=3),
    Table("ensemble-speed", "RESULTS-defenses.md",
          _py("benchmarks/ensemble_speed.py", "--model", "hyperprior-small:q3", "--crop", "256"), minutes=10),
    Table("finetune-step-cost", "RESULTS-defenses.md",
          _py("benchmarks/finetune_cost.py", "timing", "--model", "hyperprior-small:q3"), minutes=5),
    Table("finetune-few-step", "RESULTS-defenses.md",
          _py("benchmarks/finetune_cost.py", "compare", "--model", "hyperprior-small:q3", "--ks", "1", "3", "10",
              "--steps", "300"), minutes=90),
    # RESULTS-hardening.md
    Table("fuzz", "RESULTS-hardening.md",
          _py("benchmarks/fuzz_bitstreams.py", "--cases", "2000", "--workers", "1"), minutes=30, fence="json"),
    Table("fuzz-overread", "RESULTS-hardening.md",
          _py("benchmarks/fuzz_bitstreams.py", "--overread", "100", "--max-side", "512"), minutes=10, fence="json"),
    Table("memory-peak", "RESULTS-hardening.md", _py("benchmarks/memory_peak.py"), minutes=15, fence="json"),
    # RESULTS-studies.md
    Table("recompression", "RESULTS-studies.md",
          _py("benchmarks/recompression.py", "--robust", "fine-tuned=hyperprior-small-robust:q3", "--workers", "1"),
          minutes=10, writes_file=True),
]
BY_ID = {t.id: t for t in TABLES}


def _sha(h: "hashlib._Hash", path: Path, root: Path) -> None:
    h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")


#: Names of robustnic modules as they appear in code and in strings (lazy imports, registries, ``-m``).
_MODULE_NAME = re.compile(r"\brobustnic(?:\.[A-Za-z_]\w*)*")
#: A shipped model's spec as commands and scripts name it (``family:qK``).
_SPEC = re.compile(r"\b([a-z][a-z0-9-]*):q(\d+)\b")


def _module_file(name: str, source: Path | None = None) -> Path | None:
    """The file defining module ``robustnic.a.b`` (``a/b.py`` or ``a/b/__init__.py``), or None."""
    source = source or SOURCE
    parts = name.split(".")[1:]
    base = source.joinpath(*parts) if parts else source
    for path in (base.with_suffix(".py") if parts else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return path
    return None


def _imported_names(path: Path) -> set[str]:
    """Every robustnic module ``path`` may import: import statements at any depth (a name imported
    from a package may be a submodule: both are kept) and module names inside string constants
    (docstrings aside)."""
    text = path.read_text(encoding="utf-8")
    names: set[str] = set()
    tree = ast.parse(text, filename=str(path))
    prose = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose:
            names.update(_MODULE_NAME.findall(node.value))
    return {n for n in names if n == "robustnic" or n.startswith("robustnic.")}


def _sibling_imports(path: Path) -> list[Path]:
    """The scripts next to ``path`` that it imports as modules (``from defense_table import ...``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return [path.parent / f"{n}.py" for n in sorted(names) if n != path.stem and (path.parent / f"{n}.py").is_file()]


def table_modules(table: Table, source: Path | None = None) -> list[Path]:
    """The files ``table`` can run besides its script, found statically from its commands and script:
    ``src/robustnic`` modules and the other benchmark scripts it imports (shared helpers).

    A module counts when it is imported (at any depth, also inside functions) or named in a string
    (lazy exports, ``importlib``, ``python -m``) by the script or by a module already counted, with its
    parent packages. A package whose ``__init__``/module builds a :class:`Registry` (which imports
    every module of its package) brings all of that package's modules; the CLI brings all its commands.
    Over-counting only makes a table go stale sooner.
    """
    source = source or SOURCE
    seeds: set[str] = set()
    for command in (table.command, *table.needs):
        seeds.update(_MODULE_NAME.findall(" ".join(command)))
    files: set[Path] = set()
    todo: list[Path] = [table.script] if table.script is not None and table.script.is_file() else []
    todo += [f for f in map(lambda n: _module_file(n, source), seeds) if f is not None]
    while todo:
        path = todo.pop()
        if path in files:
            continue
        files.add(path)
        if not path.is_relative_to(source):  # a benchmark script: its helper scripts count too
            todo.extend(p for p in _sibling_imports(path) if p not in files)
        names = _imported_names(path)
        registry = "Registry(" in path.read_text(encoding="utf-8")
        for name in names:
            parts = name.split(".")
            for k in range(1, len(parts) + 1):  # the module and the packages above it
                found = _module_file(".".join(parts[:k]), source)
                if found is not None and found not in files:
                    todo.append(found)
            if name.startswith("robustnic.cli"):  # commands are imported by name at run time
                todo.extend(p for p in (source / "cli").rglob("*.py") if p not in files)
            found = _module_file(name, source)
            if registry and found is not None and found.name == "__init__.py":
                todo.extend(p for p in found.parent.glob("*.py") if p not in files)
    return sorted(f for f in files if f != table.script)


def table_weights(table: Table, modules: list[Path], source: Path | None = None) -> list[tuple[str, int, str]]:
    """(family, quality, sha256) of the shipped models ``table`` names in its commands, script or the
    modules it runs; every shipped model when its script reads the whole manifest."""
    manifest = (source or SOURCE) / "weights" / "manifest.json"
    if not manifest.is_file():
        return []
    rows = json.loads(manifest.read_text(encoding="utf-8"))["models"]
    texts = [" ".join(c) for c in (table.command, *table.needs)]
    script = table.script.read_text(encoding="utf-8") if table.script is not None and table.script.is_file() else ""
    if "read_manifest" in script:
        named = None
    else:
        texts += [script] + [m.read_text(encoding="utf-8") for m in modules]
        named = {(family, int(q)) for text in texts for family, q in _SPEC.findall(text)}
    return sorted((r["family"], r["quality"], r["sha256"]) for r in rows
                  if named is None or (r["family"], r["quality"]) in named)


def code_fingerprint(table: Table) -> str:
    """12 hex digits over ``table``'s script, the ``src/robustnic`` modules it can run
    (:func:`table_modules`) and the sha256 of the shipped weights it uses (:func:`table_weights`)."""
    h = hashlib.sha256()
    modules = table_modules(table)
    for path in modules:
        _sha(h, path, ROOT)
    h.update(json.dumps(table_weights(table, modules)).encode())
    if table.script is not None and table.script.is_file():
        _sha(h, table.script, ROOT)
    return h.hexdigest()[:12]


def _markers(table_id: str) -> tuple[str, str]:
    return f"<!-- results:{table_id} -->", f"<!-- /results:{table_id} -->"


def _block(text: str, table_id: str) -> tuple[int, int] | None:
    """Start and end offsets of the content between ``table_id``'s markers, or None."""
    begin, end = _markers(table_id)
    i = text.find(begin)
    j = text.find(end, i + 1) if i >= 0 else -1
    return None if i < 0 or j < 0 else (i + len(begin), j)


_STAMP = re.compile(r"code fingerprint `([0-9a-f]{12})`")


def recorded_fingerprint(table: Table) -> str | None:
    """The fingerprint written in ``table``'s block, or None (no block, or never generated)."""
    path = BENCH / table.file
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    span = _block(text, table.id)
    if span is None:
        return None
    m = _STAMP.search(text[span[0] : span[1]])
    return m.group(1) if m else None


def display(command: tuple[str, ...]) -> str:
    """The command as a reader types it (``.venv/bin/python benchmarks/x.py ...``)."""
    head = (".venv/bin/python",) if command[0] == "python" else command[:1]
    return shlex.join(head + command[1:])


def _argv(command: tuple[str, ...]) -> list[str]:
    return [sys.executable, *command[1:]] if command[0] == "python" else list(command)


def write_block(table: Table, body: str, fingerprint: str, seconds: float) -> None:
    """Replace ``table``'s block with ``body`` under its stamp line (atomic write of the whole file)."""
    path = BENCH / table.file
    text = path.read_text(encoding="utf-8")
    span = _block(text, table.id)
    if span is None and table.writes_file:  # a file the command rewrote: the stamp goes under its title
        title, _, rest = text.partition("\n")
        text = f"{title}\n\n{_markers(table.id)[0]}{_markers(table.id)[1]}\n{rest}"
        span = _block(text, table.id)
    if span is None:
        raise SystemExit(f"{path.name}: no markers for {table.id!r}; add {' '.join(_markers(table.id))} where it goes")
    stamp = (f"\n*Generated by `make results` ({table.id}): `{display(table.command)}`; code fingerprint "
             f"`{fingerprint}`; {time.strftime('%Y-%m-%d')}; {seconds / 60:.1f} min.*\n\n")
    new = text[: span[0]] + stamp + (body.strip("\n") + "\n" if body.strip() else "") + text[span[1] :]
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, path)


def run_table(table: Table, force: bool = False) -> bool:
    """Run ``table``'s needs and command and write its block; False when it was already current."""
    fingerprint = code_fingerprint(table)
    if not force and recorded_fingerprint(table) == fingerprint:
        print(f"{table.id}: current (code fingerprint {fingerprint})", file=sys.stderr)
        return False
    env = os.environ | {"PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    for need in table.needs:
        print(f"{table.id}: needs {display(need)}", file=sys.stderr)
        subprocess.run(_argv(need), cwd=ROOT, env=env, check=True)
    print(f"{table.id}: {display(table.command)}", file=sys.stderr)
    t0 = time.perf_counter()
    done = subprocess.run(_argv(table.command), cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{table.id}: exit status {done.returncode}; its block is left as it was")
    body = "" if table.writes_file else done.stdout
    if table.fence and body:
        body = f"```{table.fence}\n{body.strip()}\n```"
    write_block(table, body, fingerprint, time.perf_counter() - t0)
    return True


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="+", metavar="ID", help="these tables only (see --list)")
    p.add_argument("--force", action="store_true", help="rerun tables that are already current")
    p.add_argument("--list", action="store_true", help="list the tables, their commands and rough minutes")
    p.add_argument("--status", action="store_true", help="say which tables are current for this code")
    args = p.parse_args(argv)
    unknown = [i for i in args.only or [] if i not in BY_ID]
    if unknown:
        raise SystemExit(f"unknown table(s) {unknown}; known: {', '.join(BY_ID)}")
    tables = [BY_ID[i] for i in args.only] if args.only else TABLES
    if args.list or args.status:
        for t in tables:
            state = ""
            if args.status:
                state = "current" if recorded_fingerprint(t) == code_fingerprint(t) else "stale"
                state = f"{state:8s}"
            print(f"{state}{t.id:28s} {t.file:22s} ~{t.minutes:3d} min  {display(t.command)}")
        return
    for t in tables:
        run_table(t, force=args.force)


if __name__ == "__main__":
    main()
