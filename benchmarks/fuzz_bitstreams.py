"""Fuzz robustnic's bitstream decoder: mutate valid containers, count what the decoder does.

Every case takes a valid container (a tiny random learned model or JPEG/WebP, on a 64x96 or an
odd 45x71 crop, with a geometric transform), applies one mutation of
:func:`robustnic.testing.badinputs.mutate_bitstream` (bit flips, truncation, header fields, string
lengths, garbage payloads, a large declared size with a consistent latent shape; most with the
CRC recomputed), decodes it and records the outcome:

* ``decoded`` - an image of the declared size came back (``non-finite`` if it holds NaN/Inf);
* ``rejected: CHECK`` - :class:`BitstreamError`, grouped by the check that fired;
* ``OTHER ...`` - any other exception (must be 0);
* ``CRASH`` / ``HANG`` - the worker process died (signal) or a case took over ``--case-timeout``.

Cases run in worker subprocesses so that a crash of the native entropy decoder is counted, not
fatal; the worker is restarted after the crashing case. Usage::

    python benchmarks/fuzz_bitstreams.py --cases 10000            # current code
    python benchmarks/fuzz_bitstreams.py --cases 10000 --json fuzz.json
    python benchmarks/fuzz_bitstreams.py --cases 10000 --proposed-fix   # with the learned.py fix below

``--proposed-fix`` runs ``LearnedCodec._decode`` as proposed in RESULTS-hardening.md (strings passed
through :func:`robustnic.codecs.container.guard_rans_strings`), for as long as learned.py does not
do it itself; it changes nothing once it does.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import queue
import random
import re
import subprocess
import sys
import threading
import time

CODECS = (
    "bmshj2018-hyperprior:N=8:M=16:random",
    "bmshj2018-factorized:N=8:M=16:random",
    "mbt2018-mean:N=8:M=16:random",
    "mbt2018:N=8:M=16:random",
    "cheng2020-anchor:N=8:random",
    "jpeg:q75",
    "webp:q75",
)
#: Autoregressive models decode latent positions in a Python loop: keep their declared sizes small.
SLOW_DECODERS = ("mbt2018:", "cheng2020")

CHECKS = (
    ("bad magic", "magic bytes"),
    ("checksum mismatch", "checksum (CRC-32)"),
    ("truncated while reading", "field truncated"),
    ("unsupported bitstream version", "version"),
    ("reserved bits", "flags reserved bits"),
    ("unknown metric", "metric code"),
    ("out of range", "varint out of range"),
    ("not a valid varint", "varint too long"),
    ("empty image", "empty image"),
    ("over the decoding limit", "declared size over the limit"),
    ("latent dimensions", "latent dimension count"),
    ("strings (max", "string count"),
    ("trailing bytes", "trailing bytes"),
    ("written by another codec", "codec/model mismatch"),
    ("latent shape", "latent shape vs image size"),
    ("rANS strings are whole", "rANS string length"),
    ("entropy decoding failed", "entropy decoder error"),
    ("must hold one string", "string count (classical)"),
    ("payload could not be decoded", "image payload undecodable"),
    ("header says", "payload size vs header"),
    ("non-finite", "non-finite reconstruction"),
)


def classify(message: str) -> str:
    for needle, label in CHECKS:
        if needle in message:
            return label
    return "other: " + re.sub(r"\d+", "N", message)[:70]


def case_plan(seed: int, index: int) -> tuple[int, int, str, random.Random]:
    """(codec index, base index, mutation kind, rng) of case ``index``: deterministic."""
    from robustnic.testing.badinputs import BITSTREAM_MUTATIONS

    rng = random.Random(f"{seed}:{index}")
    return rng.randrange(len(CODECS)), rng.randrange(2), rng.choice(BITSTREAM_MUTATIONS), rng


# ----- the worker: runs cases, prints one line per case ------------------------------------
def apply_proposed_fix() -> bool:
    """Make ``LearnedCodec._decode`` guard its strings, unless it already does. True if patched."""
    import inspect

    import torch

    from robustnic.codecs import container
    from robustnic.codecs.learned import LearnedCodec

    original = LearnedCodec._decode
    if "guard_rans_strings" in inspect.getsource(original):
        return False

    def _decode(self, strings, shape, size):
        pixels = (-(-size[0] // 64) * 64) * (-(-size[1] // 64) * 64)
        widest = max(v.shape[0] for v in self.net.state_dict().values() if v.dim() == 4)
        return original(self, container.guard_rans_strings(strings, pixels // 256 * widest), shape, size)

    LearnedCodec._decode = _decode
    torch.set_num_threads(1)
    return True


def worker(args: argparse.Namespace) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    torch.set_num_threads(1)
    if args.proposed_fix:
        apply_proposed_fix()
    from robustnic.codecs import container, load_codec
    from robustnic.data import bundled_photos
    from robustnic.testing.badinputs import mutate_bitstream
    from robustnic.errors import BitstreamError

    photos = [bundled_photos([name], crop=crop)[name] for name, crop in (("astronaut", (64, 96)), ("coffee", (45, 71)))]
    codecs, bases = [], []
    for i, spec in enumerate(CODECS):
        torch.manual_seed(i)
        codec = load_codec(spec)
        codecs.append(codec)
        bases.append([codec.compress(photos[0], transform=0), codec.compress(photos[1], transform=5)])
    out = sys.stdout
    for index in range(args.start, args.stop):
        c, b, kind, rng = case_plan(args.seed, index)
        max_side = 256 if CODECS[c].startswith(SLOW_DECODERS) else args.max_side
        data = mutate_bitstream(bases[c][b], kind, rng, max_side=max_side)
        out.write(f"start\t{index}\n")
        out.flush()
        t0 = time.perf_counter()
        try:
            header, _ = container.unpack(data)
        except BitstreamError:
            header = None
        try:
            x = codecs[c].decompress(data)
            if header is None or tuple(x.shape) != (1, 3, header.height, header.width):
                status = f"OTHER decoded with shape {tuple(x.shape)}, header says {header}"
            elif not torch.isfinite(x).all():
                status = "decoded (non-finite values)"
            else:
                status = "decoded"
        except BitstreamError as exc:
            status = "rejected: " + classify(str(exc))
        except Exception as exc:  # noqa: BLE001 - the point is to count these
            status = f"OTHER {type(exc).__name__}: {str(exc)[:100]}"
        out.write(f"done\t{index}\t{CODECS[c]}\t{kind}\t{time.perf_counter() - t0:.4f}\t{status}\n")
        out.flush()


# ----- how far the rANS decoder reads past its strings (a Python model of compressai.ans) --------
def rans_words_read(data: bytes, indexes: list[int], cdfs: list[list[int]], lengths: list[int],
                    offsets: list[int]) -> int:
    """32-bit words CompressAI's ``decode_with_indexes`` reads from ``data`` (Rans64, 16-bit
    probabilities, 4-bit bypass), counting reads past the end as zeros."""
    words = [int.from_bytes(data[i : i + 4].ljust(4, b"\0"), "little") for i in range(0, len(data), 4)]
    pos = 2
    get = (lambda i: words[i] if i < len(words) else 0)
    x = get(0) | (get(1) << 32)
    low, mask = 1 << 31, (1 << 16) - 1
    for idx in indexes:
        cdf, max_value = cdfs[idx], lengths[idx] - 2
        cum = x & mask
        s = 0
        while s + 1 < lengths[idx] and cdf[s + 1] <= cum:
            s += 1
        x = (cdf[s + 1] - cdf[s]) * (x >> 16) + (x & mask) - cdf[s]
        if x < low:
            x, pos = ((x << 32) | get(pos)) & (2**64 - 1), pos + 1
        if s == max_value:
            def bits() -> int:
                nonlocal x, pos
                val, x = x & 15, x >> 4
                if x < low:
                    x, pos = ((x << 32) | get(pos)) & (2**64 - 1), pos + 1
                return val
            val = bits()
            n_bypass = val
            while val == 15:
                val = bits()
                n_bypass += val
            for _ in range(n_bypass):
                bits()
    return pos


def measure_overread(args: argparse.Namespace) -> dict:
    """Decode ``large-size`` and ``string-garbage`` cases with strings padded far beyond any need,
    replaying every ``decode_with_indexes`` call in :func:`rans_words_read`: the bytes each
    decode read past its real string, per decoded symbol (what ``RANS_GUARD_PER_SYMBOL`` covers)."""
    import warnings

    warnings.filterwarnings("ignore")
    import torch

    from robustnic.codecs import container, load_codec
    from robustnic.codecs.learned import LearnedCodec
    from robustnic.data import bundled_photos
    from robustnic.testing.badinputs import mutate_bitstream
    from robustnic.errors import BitstreamError

    original_lengths: dict[int, int] = {}
    calls: list[tuple] = []
    original = LearnedCodec._decode

    def _decode(self, strings, shape, size):
        padded = [bytes(s) + bytes(256 * 1024 + 256 * 16 * size[0] * size[1] // 256) for s in strings]
        for s, p in zip(strings, padded):
            original_lengths[id(p)] = len(s)
        return original(self, padded, shape, size)

    LearnedCodec._decode = _decode
    real_guard = container.guard_rans_strings

    def _guard(strings, max_symbols):  # the decoder's guarded copies keep their real lengths
        out = real_guard(strings, max_symbols)
        for s, g in zip(strings, out):
            original_lengths[id(g)] = original_lengths.get(id(s), len(s))
        return out

    container.guard_rans_strings = _guard
    x = bundled_photos(["astronaut"], crop=(64, 96))["astronaut"]
    worst = {"bytes_past_end": 0, "per_symbol": 0.0}
    n_decodes = 0
    for spec in CODECS[:3]:  # the models that decode through decode_with_indexes
        torch.manual_seed(0)
        codec = load_codec(spec)
        for m in codec.net.modules():
            coder = getattr(m, "entropy_coder", None)
            if coder is not None and not hasattr(coder, "_recording"):
                real = coder.decode_with_indexes
                coder.decode_with_indexes = (lambda *a, _real=real: (calls.append(a), _real(*a))[1])
                coder._recording = True
        base = codec.compress(x)
        for i in range(args.overread):
            kind = "large-size" if i % 2 else "string-garbage"
            data = mutate_bitstream(base, kind, random.Random(f"overread:{i}"), max_side=args.max_side)
            calls.clear()
            try:
                codec.decompress(data)
            except BitstreamError:
                pass
            header = container.unpack(data)[0] if calls else None
            for s, indexes, cdfs, lengths, offsets in calls:
                real_len = original_lengths.get(id(s), len(s))
                past = max(0, 4 * rans_words_read(s[: real_len], indexes, cdfs, lengths, offsets) - real_len)
                n_decodes += 1
                # the guard the proposed learned.py fix gives this string (see apply_proposed_fix)
                pixels = (-(-header.height // 64) * 64) * (-(-header.width // 64) * 64)
                widest = max(v.shape[0] for v in codec.net.state_dict().values() if v.dim() == 4)
                guard = len(container.guard_rans_strings([bytes(8)], pixels // 256 * widest)[0]) - 8
                guard += 16 * (real_len - 8)
                worst["bytes_past_end"] = max(worst["bytes_past_end"], past)
                worst["per_symbol"] = max(worst["per_symbol"], past / max(len(indexes), 1))
                worst["guard_used"] = max(worst.get("guard_used", 0.0), past / guard)
        # the model is exact on valid strings: it reads every word the encoder wrote, no more
        calls.clear()
        codec.decompress(base)
        for s, indexes, cdfs, lengths, offsets in calls:
            real_len = original_lengths.get(id(s), len(s))
            assert 4 * rans_words_read(s[:real_len], indexes, cdfs, lengths, offsets) == real_len
    return {"decodes_replayed": n_decodes, "max_bytes_read_past_end": worst["bytes_past_end"],
            "max_bytes_past_end_per_symbol": round(worst["per_symbol"], 3),
            "max_fraction_of_guard_used": round(worst.get("guard_used", 0.0), 4)}


# ----- the parent: runs workers, survives their crashes ------------------------------------
def _reader(stream, q: queue.Queue) -> None:
    for line in stream:
        q.put(line)
    q.put(None)


def run_range(args: argparse.Namespace, start: int, stop: int, results: list, log) -> None:
    next_case = start
    while next_case < stop:
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--start", str(next_case), "--stop", str(stop),
               "--seed", str(args.seed), "--max-side", str(args.max_side)]
        cmd += ["--proposed-fix"] if args.proposed_fix else []
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        q: queue.Queue = queue.Queue()
        threading.Thread(target=_reader, args=(proc.stdout, q), daemon=True).start()
        current, timeout = None, 600.0  # generous for the worker's start-up
        while True:
            try:
                line = q.get(timeout=timeout)
            except queue.Empty:
                proc.kill()
                proc.wait()
                c, _, kind, _ = case_plan(args.seed, current)
                results.append({"case": current, "codec": CODECS[c], "kind": kind, "status": "HANG", "seconds": None})
                log(f"case {current}: HANG ({CODECS[c]}, {kind})")
                next_case = current + 1
                break
            if line is None:
                rc = proc.wait()
                if current is None or rc == 0:
                    next_case = stop
                else:
                    c, _, kind, _ = case_plan(args.seed, current)
                    results.append({"case": current, "codec": CODECS[c], "kind": kind,
                                    "status": f"CRASH (exit {rc})", "seconds": None})
                    log(f"case {current}: CRASH exit {rc} ({CODECS[c]}, {kind})")
                    next_case = current + 1
                break
            parts = line.rstrip("\n").split("\t")
            if parts[0] == "start":
                current, timeout = int(parts[1]), args.case_timeout
            elif parts[0] == "done":
                results.append({"case": int(parts[1]), "codec": parts[2], "kind": parts[3],
                                "seconds": float(parts[4]), "status": parts[5]})
                current = None


def summarize(results: list) -> dict:
    by_status = collections.Counter(r["status"] for r in results)
    by_codec = collections.defaultdict(collections.Counter)
    for r in results:
        bucket = r["status"] if r["status"].startswith(("decoded", "OTHER", "CRASH", "HANG")) else "rejected"
        by_codec[r["codec"]][bucket.split(" (")[0] if bucket.startswith("CRASH") else bucket] += 1
    seconds = [r["seconds"] for r in results if r["seconds"] is not None]
    bad = sum(n for s, n in by_status.items() if s.startswith(("OTHER", "CRASH", "HANG")))
    return {
        "cases": len(results), "other_exceptions_crashes_hangs": bad,
        "by_status": dict(by_status.most_common()), "by_codec": {k: dict(v) for k, v in by_codec.items()},
        "slowest_case_s": max(seconds, default=0.0),
        "problems": [r for r in results if r["status"].startswith(("OTHER", "CRASH", "HANG"))][:50],
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=2, help="parallel worker processes")
    p.add_argument("--max-side", type=int, default=1024, help="largest side declared by 'large-size' cases")
    p.add_argument("--case-timeout", type=float, default=60.0, help="seconds before a case counts as a hang")
    p.add_argument("--proposed-fix", action="store_true", help="guard rANS strings as proposed for learned.py")
    p.add_argument("--overread", type=int, default=0, metavar="N",
                   help="instead: replay N garbage decodes per model in a Python model of the rANS decoder "
                        "and report how far past its strings it reads")
    p.add_argument("--json", default=None, help="write the summary (and every problem case) here")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--stop", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        worker(args)
        return 0
    if args.overread:
        print(json.dumps(measure_overread(args), indent=1))
        return 0
    t0 = time.perf_counter()
    results: list = []
    lock = threading.Lock()

    def log(msg: str) -> None:
        with lock:
            print(msg, file=sys.stderr, flush=True)

    bounds = [args.cases * k // args.workers for k in range(args.workers + 1)]
    threads = [threading.Thread(target=run_range, args=(args, bounds[k], bounds[k + 1], results, log))
               for k in range(args.workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    summary = summarize(sorted(results, key=lambda r: r["case"]))
    summary["wall_s"] = round(time.perf_counter() - t0, 1)
    summary["command"] = " ".join([os.path.basename(sys.executable), *sys.argv])
    print(json.dumps({k: v for k, v in summary.items() if k != "problems"}, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=1)
    return 1 if summary["other_exceptions_crashes_hangs"] else 0


if __name__ == "__main__":
    sys.exit(main())
