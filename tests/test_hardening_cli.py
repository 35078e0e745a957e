"""Hardening, CLI level: every command that reads images, run over the whole bad-input corpus.

The commands are discovered from the parser: a subcommand reads images when it has an argument
whose destination is ``image``, ``images``, ``input`` or ``inputs``; it takes a folder when that
argument is plural (or its help mentions a folder). "Handled correctly" means:

* a ``valid`` odd image (16-bit, palette, CMYK, alpha, gray, EXIF, 1x1, 1xN ...) is processed:
  exit 0 and an output written;
* a ``too-large`` or ``invalid`` file given alone: exit 2, stderr is exactly one line
  ``robustnic CMD: error: ...`` naming the file, and no output file (nor a temporary one) left;
* a folder holding the whole corpus: either exit 2 with that one line and nothing written
  (fail fast), or skip and warn: exactly one stderr line per bad file naming it, the other images'
  outputs written, a last line ``robustnic CMD: N of M images could not be read ...`` and exit 1;
* ``--max-pixels`` exists and is applied;
* never a traceback, never a hang (every run has a timeout).

Commands that take one file run every corpus file alone; folder commands run a few files alone,
the whole corpus as a folder and the odd valid images as a folder. All these runs go through one
Python process that calls ``robustnic.cli.main.main`` repeatedly (torch is imported once); a few
runs are real ``python -m`` subprocesses that check the exit status and stderr the user sees.

Exceptions are tables below: training commands refuse the corpus' small images (they need
patches), batch commands refuse a folder of mixed sizes, and ``KNOWN_MISMATCHES`` lists commands
that do not behave as above yet (reported to their owners; strict xfail, so a fix shows up).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from robustnic.cli.main import build_parser
from robustnic.testing.badinputs import TOO_LARGE, VALID, corpus_entries, write_corpus

TINY_MODEL = "bmshj2018-hyperprior:N=8:M=16:random"
IMAGE_DESTS = ("image", "images", "input", "inputs")
OUT_DESTS = ("out", "output", "out_dir")
#: Options that make a command fast, added when the command has them.
FAST_OPTIONS = {"--steps": "2", "--iterations": "2"}
FAST_FLAGS = ("--no-progress",)
#: Extra arguments per command, to keep runs small.
EXTRA_ARGS = {
    "train": ["--N", "8", "--M", "16", "--batch-size", "1", "--patch-size", "64"],
    "finetune": ["--batch-size", "1", "--patch-size", "64", "--attack-steps", "1"],
    "curves": ["--budgets", "psnr:40"],
    "recompress": ["--generations", "2", "--snapshots", "1,2", "--classical", "jpeg"],
    "transfer": ["--no-cross-image"],
}
#: The files run alone by commands that take folders (all of them run alone through the others).
FOLDER_CMD_SINGLES = ("exif_rotated.jpg", "one_by_one.png", "bomb_400mp.png", "truncated_png.png", "text.png")
#: The odd valid images a folder command processes in one run (every one goes through compress).
VALID_FOLDER = ("gray16.png", "rgb48.png", "bilevel.png", "palette_transparent.png", "rgba.png", "gray_alpha.png",
                "cmyk_jpeg.jpg", "exif_rotated.jpg", "one_by_one.png", "one_by_n.png", "n_by_one.png", "float.tif",
                "animated.gif", "rgba_webp.webp")
#: Where a command does not (yet) behave as above: reported to its owner; the tests are expected to
#: fail until it is fixed (strict: a fixed command makes them fail, and its row must go).
KNOWN_MISMATCHES: dict[str, str] = {}
#: Commands that attack a folder as one batch: images of different sizes are refused (one line).
BATCH_COMMANDS = {"defend": "attacks the folder as one batch: 'images differ in size ... use --crop'"}
NO_MAX_PIXELS: set[str] = set()
#: Commands that legitimately refuse the corpus' small valid images (with the usual one line).
REFUSES_VALID = {
    "train": "training needs images of at least --patch-size pixels a side",
    "finetune": "fine-tuning samples training patches of at least --patch-size pixels a side",
}
ENTRIES = corpus_entries()
BAD = [e for e in ENTRIES if e.kind != VALID]
TIMEOUT = 300


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _image_action(p: argparse.ArgumentParser) -> argparse.Action | None:
    return next((a for a in p._actions if a.dest in IMAGE_DESTS), None)


SUBCOMMANDS = _subcommands()
IMAGE_COMMANDS = sorted(name for name, p in SUBCOMMANDS.items() if _image_action(p) is not None)


def _takes_folder(p: argparse.ArgumentParser) -> bool:
    a = _image_action(p)
    return a.dest.endswith("s") or "folder" in (a.help or "")


def command_argv(cmd: str, image: Path, out: Path, extra: tuple[str, ...] | list[str] = ()) -> list[str]:
    """argv running ``cmd`` on ``image`` with the tiny model, writing under ``out``."""
    p = SUBCOMMANDS[cmd]
    argv = [cmd]
    for a in p._actions:
        opt = a.option_strings[0] if a.option_strings else None
        long = next((o for o in a.option_strings if o.startswith("--")), opt)
        if a.dest in IMAGE_DESTS:
            argv += [str(image)] if opt is None else [long, str(image)]
        elif a.dest == "model":
            argv += [long, TINY_MODEL]
        elif a.dest in OUT_DESTS:
            argv += [str(out / "result")] if opt is None else [long, str(out / "result")]
        elif long in FAST_OPTIONS:
            argv += [long, FAST_OPTIONS[long]]
        elif long in FAST_FLAGS:
            argv += [long]
        elif a.required and a.dest != "help":
            pytest.fail(f"robustnic {cmd}: test does not know how to fill required argument {a.dest!r}")
    return argv + EXTRA_ARGS.get(cmd, []) + list(extra)


DRIVER = r"""
import contextlib, io, json, sys, time, traceback
from robustnic.cli.main import main
jobs = json.load(open(sys.argv[1]))
results = []
for job in jobs:
    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = main(job["argv"])
        except SystemExit as exc:
            rc = exc.code if isinstance(exc.code, int) else 2
        except BaseException:
            rc = None
            err.write(traceback.format_exc())
    results.append(dict(job, rc=rc, stdout=out.getvalue(), stderr=err.getvalue(), time=time.perf_counter() - t0))
    with open(sys.argv[2], "w") as f:
        json.dump(results, f)
"""


def run_in_process(jobs: list[dict], tmp: Path) -> list[dict]:
    """Run every job's argv through ``main`` in one fresh Python process; return the results."""
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    proc = subprocess.run(
        [sys.executable, "-c", DRIVER, str(tmp / "jobs.json"), str(tmp / "results.json")],
        capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((tmp / "results.json").read_text())


def run_cli(argv: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "robustnic.cli.main", *argv], capture_output=True, text=True,
                          timeout=TIMEOUT)


def written(out: Path) -> list[str]:
    return sorted(p.name for p in out.rglob("*")) if out.exists() else []


def check_refused(cmd: str, rc: int | None, stderr: str, name: str, out: Path) -> None:
    lines = stderr.strip().splitlines()
    assert rc == 2, f"{cmd} {name}: exit {rc}\n{stderr[-2000:]}"
    assert len(lines) == 1 and lines[0].startswith(f"robustnic {cmd}: error:"), f"{cmd} {name}: {stderr[-2000:]}"
    if cmd not in REFUSES_VALID:
        assert name in lines[0], f"{cmd}: the message does not name the file: {lines[0]}"
    assert written(out) == [], f"{cmd} {name}: left {written(out)}"


def check_skipped(cmd: str, rc: int | None, stderr: str, out: Path) -> None:
    """Skip and warn: exit 1, one line per bad file naming it, a count at the end, outputs written."""
    lines = stderr.strip().splitlines()
    assert rc == 1 and "Traceback" not in stderr, f"{cmd}: exit {rc}\n{stderr[-2000:]}"
    for e in BAD:
        assert sum(e.name in line for line in lines) == 1, f"{cmd}: no one-line warning for {e.name}"
    assert lines[-1].startswith(f"robustnic {cmd}: {len(BAD)} of ") and "could not be read" in lines[-1], lines[-1]
    assert written(out), f"{cmd}: the readable images' outputs were not written"


def check_processed(cmd: str, rc: int | None, stderr: str, name: str, out: Path) -> None:
    assert rc == 0, f"{cmd} {name}: exit {rc}\n{stderr[-2000:]}"
    assert "Traceback" not in stderr
    files = written(out)
    assert files and not [f for f in files if f.endswith(".part") or f.startswith(".")], f"{cmd} {name}: {files}"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corpus")
    write_corpus(folder)
    (folder / "MANIFEST.json").unlink()
    return folder


@pytest.fixture(scope="module")
def valid_folder(corpus, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("valid")
    for name in VALID_FOLDER:
        (folder / name).write_bytes((corpus / name).read_bytes())
    return folder


def _jobs(cmd: str, corpus: Path, valid_folder: Path, tmp: Path) -> list[dict]:
    """Every corpus file alone (commands that take one file), or a few files alone plus the
    whole corpus and the valid files as folders (commands that take folders)."""
    folder_cmd = _takes_folder(SUBCOMMANDS[cmd])
    singles = [e for e in ENTRIES if not folder_cmd or e.name in FOLDER_CMD_SINGLES]
    jobs = []
    for i, e in enumerate(singles):
        jobs.append({"cmd": cmd, "what": "single", "name": e.name, "kind": e.kind, "out": str(tmp / f"{cmd}-{i}"),
                     "argv": command_argv(cmd, corpus / e.name, tmp / f"{cmd}-{i}")})
    if any("--max-pixels" in a.option_strings for a in SUBCOMMANDS[cmd]._actions):
        out = tmp / f"{cmd}-maxpix"
        jobs.append({"cmd": cmd, "what": "max-pixels", "name": "rgb.png", "kind": TOO_LARGE, "out": str(out),
                     "argv": command_argv(cmd, corpus / "rgb.png", out, ["--max-pixels", "100"])})
    if folder_cmd:
        for what, folder in (("folder", corpus), ("valid-folder", valid_folder)):
            out = tmp / f"{cmd}-{what}"
            jobs.append({"cmd": cmd, "what": what, "name": str(folder), "kind": what, "out": str(out),
                         "argv": command_argv(cmd, folder, out)})
    return jobs


@pytest.fixture(scope="module")
def results(corpus, valid_folder, tmp_path_factory) -> dict[str, list[dict]]:
    """Every command's runs, in one Python process (torch is imported once)."""
    tmp = tmp_path_factory.mktemp("runs")
    jobs = [job for cmd in IMAGE_COMMANDS for job in _jobs(cmd, corpus, valid_folder, tmp)]
    out: dict[str, list[dict]] = {cmd: [] for cmd in IMAGE_COMMANDS}
    for r in run_in_process(jobs, tmp):
        out[r["cmd"]].append(r)
    return out


def test_image_commands_are_discovered():
    assert {"compress", "eval"} <= set(IMAGE_COMMANDS), IMAGE_COMMANDS
    if "attack" in SUBCOMMANDS:
        assert "attack" in IMAGE_COMMANDS


@pytest.mark.parametrize("cmd", IMAGE_COMMANDS)
def test_image_commands_take_max_pixels(cmd, request):
    if cmd in NO_MAX_PIXELS:
        request.applymarker(pytest.mark.xfail(strict=True, reason=f"{cmd} has no --max-pixels (reported)"))
    options = {o for a in SUBCOMMANDS[cmd]._actions for o in a.option_strings}
    assert "--max-pixels" in options, f"robustnic {cmd} has no --max-pixels"


@pytest.mark.parametrize("cmd", IMAGE_COMMANDS)
def test_command_over_the_corpus(cmd, results, request):
    if cmd in KNOWN_MISMATCHES:
        request.applymarker(pytest.mark.xfail(strict=True, reason=KNOWN_MISMATCHES[cmd]))
    failures = []
    runs = results[cmd]
    assert runs, f"{cmd}: no run"
    for r in runs:
        out = Path(r["out"])
        try:
            if r["what"] == "folder":
                if r["rc"] == 2:
                    check_refused(cmd, r["rc"], r["stderr"], "", out)
                else:
                    check_skipped(cmd, r["rc"], r["stderr"], out)
            elif r["kind"] == "valid-folder" and cmd in BATCH_COMMANDS:
                check_refused(cmd, r["rc"], r["stderr"], "", out)
                assert "differ in size" in r["stderr"]
            elif r["kind"] in (VALID, "valid-folder") and cmd not in REFUSES_VALID:
                check_processed(cmd, r["rc"], r["stderr"], r["name"], out)
            elif r["kind"] == "valid-folder":
                check_refused(cmd, r["rc"], r["stderr"], "", out)
            else:
                check_refused(cmd, r["rc"], r["stderr"], r["name"], out)
            assert r["time"] < 120, f"{cmd} {r['name']}: {r['time']:.0f} s"
        except AssertionError as exc:
            failures.append(f"{r['what']} {r['name']}: {exc}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("cmd", [c for c in ("compress", "eval", "attack") if c in IMAGE_COMMANDS])
def test_command_as_the_user_sees_it(cmd, corpus, tmp_path):
    """A real process: the whole corpus folder (or a bomb, for one-file commands) gives exit 2 and
    one line, or exit 1 after one warning line per bad file and a count; never a traceback."""
    if _takes_folder(SUBCOMMANDS[cmd]):
        proc = run_cli(command_argv(cmd, corpus, tmp_path / "out"))
        if proc.returncode == 2:
            check_refused(cmd, proc.returncode, proc.stderr, "", tmp_path / "out")
        else:
            check_skipped(cmd, proc.returncode, proc.stderr, tmp_path / "out")
    else:
        proc = run_cli(command_argv(cmd, corpus / "bomb_400mp.png", tmp_path / "out"))
        check_refused(cmd, proc.returncode, proc.stderr, "bomb_400mp.png", tmp_path / "out")


def test_decompress_refuses_hostile_bitstreams_in_one_line(tmp_path):
    """Empty, foreign, truncated and oversized bitstream files through ``robustnic decompress``."""
    import random

    import torch

    from robustnic.codecs import container, load_codec
    from robustnic.testing.badinputs import fix_crc, mutate_bitstream

    torch.manual_seed(0)
    data = load_codec("jpeg:q75").compress(torch.rand(1, 3, 16, 16))
    files = {
        "empty.rnic": b"", "text.rnic": b"hello", "truncated.rnic": data[: len(data) // 2],
        "flipped.rnic": mutate_bitstream(data, "bitflip", random.Random(0)),
        "garbage.rnic": mutate_bitstream(data, "string-garbage", random.Random(1)),
        "huge.rnic": container.pack(container.Header(codec=100, height=1 << 20, width=1 << 20), [b"x"]),
        "crc-valid-junk.rnic": fix_crc(b"RNIC\x01\x00\x64" + bytes(30)),
    }
    jobs = []
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        out = tmp_path / f"out-{name}"
        jobs.append({"name": name, "out": str(out),
                     "argv": ["decompress", str(tmp_path / name), "-o", str(out / "x.png"), "--model", "jpeg:q75"]})
    for r in run_in_process(jobs, tmp_path):
        check_refused("decompress", r["rc"], r["stderr"], "", Path(r["out"]))


def test_eval_keeps_images_whose_stems_collide(tmp_path, corpus):
    """``a.png`` and ``a.jpg`` in one folder must both be evaluated (not one silently dropped)."""
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes((corpus / "rgb.png").read_bytes())
    (folder / "a.jpg").write_bytes((corpus / "progressive.jpg").read_bytes())
    from robustnic.data.photos import load_photo_set

    assert sorted(load_photo_set(str(folder))) == ["a.jpg", "a.png"]
