"""Job kinds of the benchmark grid: what one row of the results store measures.

Each kind is a :class:`JobKind` in :data:`JOB_KINDS` - its axes (expanded into a Cartesian product),
its parameters with defaults, and a ``run(config, device) -> JobOutput`` function. Adding a kind is
adding one entry; the grid runner, the store and the report read every kind the same way.

==================  =====================================================================
kind                one row holds
==================  =====================================================================
``rd``              clean rate-distortion of a (defended) codec on one image
``attack``          an attack on one image, verified on real bitstreams (+ image panels)
``recompression``   PSNR and bpp at every generation of re-encoding one image
``transfer-image``  a perturbation crafted on each image, added to every other (matrix)
``transfer-model``  adversarial images crafted on source models, decoded by target models
``analyze``         the amplification spectrum of one image, an attack's VI and layer ratios
==================  =====================================================================

Configurations are complete and JSON-safe: models and images are fingerprinted (sha256) so a
changed weight file or photo gives a new key.
"""

from __future__ import annotations

import functools
import io
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from PIL import Image

from robustnic.codecs.base import Codec
from robustnic.codecs.checkpoint import file_sha256
from robustnic.codecs.zoo import load_codec, weights_sha256
from robustnic.data.images import DEFAULT_MAX_PIXELS, image_paths, load_image, to_uint8
from robustnic.data.photos import center_crop, heldout_photo_paths
from robustnic.errors import RobustnicError
from robustnic.metrics import psnr
from robustnic.studies.store import Artifact


@dataclass
class JobOutput:
    """What a job returns: measured values (JSON-safe), images, and wall-clock times."""

    result: dict[str, Any]
    artifacts: list[Artifact] = field(default_factory=list)
    timing: dict[str, float] = field(default_factory=dict)


# ----- images and models named in configurations ------------------------------------------------
def resolve_images(value: str | list[str], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> list[dict[str, str]]:
    """Image-set specs -> image references ``{"name", "source", "sha256"}``, every image checked readable.

    A spec is ``bundled`` (every held-out photo), ``bundled:NAME``, a folder or an image file. An
    unreadable, empty or too large (``max_pixels``) image raises :class:`~robustnic.errors.ImageError`
    naming the file, before any job runs.
    """
    specs = [value] if isinstance(value, str) else list(value)
    refs: list[dict[str, str]] = []
    held = heldout_photo_paths() if any(str(s).startswith(("bundled", "heldout")) for s in specs) else {}
    for spec in specs:
        spec = str(spec)
        head, _, name = spec.partition(":")
        if head in ("bundled", "heldout"):
            names = [name] if name else list(held)
            for n in names:
                if n not in held:
                    raise RobustnicError(f"unknown bundled photo {n!r}; choose from {', '.join(held)}")
                refs.append({"name": n, "source": f"bundled:{n}", "sha256": cached_sha256(held[n])})
        else:
            for p in image_paths(spec):
                _check_image(p, max_pixels)
                refs.append({"name": p.stem, "source": str(p.resolve()), "sha256": cached_sha256(p)})
    if not refs:
        raise RobustnicError("no images selected")
    return refs


def _check_image(path: Path, max_pixels: int | None) -> None:
    st = path.stat()
    _checked_image(str(path), st.st_mtime_ns, st.st_size, max_pixels)


@functools.lru_cache(maxsize=1024)
def _checked_image(path: str, mtime_ns: int, size: int, max_pixels: int | None) -> None:
    load_image(path, max_pixels=max_pixels)  # raises ImageError naming the file


def ref_path(ref: dict[str, str]) -> Path:
    """The file an image reference (see :func:`resolve_images`) names."""
    source = ref["source"]
    return heldout_photo_paths()[source.split(":", 1)[1]] if source.startswith("bundled:") else Path(source)


def load_ref(ref: dict[str, str], crop: int | list[int] | None) -> torch.Tensor:
    """Load an image reference (see :func:`resolve_images`), centre-cropped to ``crop``."""
    x = load_image(ref_path(ref), max_pixels=None)  # checked when the grid was expanded
    if crop is not None:
        x = center_crop(x, crop if isinstance(crop, int) else tuple(crop))
    return x.contiguous()


@functools.lru_cache(maxsize=256)
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def cached_sha256(path: Path) -> str:
    """sha256 of a file, computed once per (path, modification time, size) in this process."""
    st = path.stat()
    return _file_sha256(str(path.resolve()), st.st_mtime_ns, st.st_size)


def model_fingerprint(spec: str) -> str | None:
    """sha256 of the weights a model spec names (:func:`robustnic.codecs.zoo.weights_sha256`: a shipped
    model's manifest hash, a checkpoint file's content whatever its name), else None.

    Random and classical specs are fully described by the string itself (and the job's seed); a spec
    that does not load gets None here and fails when its job runs.
    """
    try:
        return weights_sha256(spec, file_hash=cached_sha256)
    except RobustnicError:
        return None


def png_bytes(x: torch.Tensor) -> bytes:
    """An image tensor as PNG bytes (8-bit)."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(x)).save(buf, format="PNG")
    return buf.getvalue()


def png_tensor(data: bytes) -> torch.Tensor:
    """PNG bytes -> ``(1, 3, H, W)`` float tensor."""
    return load_image(data)


# ----- defenses ------------------------------------------------------------------------------------
def apply_defense(codec: Codec, defense: str | None) -> Codec:
    """Wrap ``codec`` in a defense spec of :func:`robustnic.defenses.make_defense` (``none``: unchanged)."""
    if defense in (None, "", "none"):
        return codec
    from robustnic.defenses import make_defense

    return make_defense(codec, defense)


def build_codec(spec: str, defense: str | None, seed: int, device: str) -> Codec:
    """Load a codec spec (random weights drawn under ``seed``) and apply a defense."""
    torch.manual_seed(seed)
    return apply_defense(load_codec(spec, device), defense)


# ----- the job kinds --------------------------------------------------------------------------------
@dataclass(frozen=True)
class JobKind:
    """A kind of job: axes (expanded), parameters (with defaults) and the function that runs it.

    The spec may give an axis as its plural (a list, e.g. ``models``) or singular (one value).
    ``lists`` are parameters that are lists themselves (never expanded).
    """

    name: str
    run: Callable[[dict[str, Any], str], JobOutput]
    axes: tuple[str, ...]
    params: dict[str, Any]
    lists: tuple[str, ...] = ()
    doc: str = ""

    def expand(self, params: dict[str, Any], max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[dict[str, Any]]:
        """Configurations of every job in a study (``params``: the study's keys merged with shared ones).

        Images larger than ``max_pixels`` are refused (the limit is not part of the configuration).
        """
        params = dict(params)
        allowed = set(self.axes) | {a + "s" for a in self.axes} | set(self.params) | set(self.lists)
        unknown = set(params) - allowed
        if "images" in unknown and "image" not in self.axes:
            unknown.discard("images")  # a shared key this kind does not use as an axis
        if unknown:
            raise RobustnicError(f"unknown key(s) {sorted(unknown)}; {self.name} takes {sorted(allowed)}")
        values: dict[str, list[Any]] = {}
        for axis in self.axes:
            plural = axis + "s"
            if plural in params and axis in params:
                raise RobustnicError(f"give {axis!r} or {plural!r}, not both")
            got = params.pop(plural, params.pop(axis, None))
            if got is None:
                if axis not in self.params:
                    raise RobustnicError(f"missing {plural!r}")
                got = self.params[axis]
            got = got if isinstance(got, list) else [got]
            if not got:
                raise RobustnicError(f"{plural!r} is empty")
            values[axis] = resolve_images(got, max_pixels) if axis == "image" else got
        base = {k: params.get(k, v) for k, v in self.params.items() if k not in self.axes}
        for k in self.lists:
            if base.get(k) is not None and not isinstance(base[k], list):
                base[k] = [base[k]]
        missing = [k for k in self.lists if base.get(k) is None]
        if missing:
            raise RobustnicError(f"missing {missing}")
        if "images" in self.lists:
            base["images"] = resolve_images(base["images"], max_pixels)
        for combo in itertools.product(*(values[a] for a in self.axes)):
            config = base | dict(zip(self.axes, combo)) | {"kind": self.name}
            yield _finish(config)


def _finish(config: dict[str, Any]) -> dict[str, Any]:
    """Add model fingerprints, drop keys that do not apply (so they do not change the key)."""
    if "also_against" in config:  # one model spec or a list of them (an attack's agnostic-ratio models)
        also = config["also_against"]
        also = [also] if isinstance(also, str) else also
        if also is not None and (not isinstance(also, list) or not all(isinstance(m, str) for m in also)):
            raise RobustnicError(f"'also_against' must be a model spec or a list of them, got {also!r}")
        config["also_against"] = also or None
    models = [config.get("model"), config.get("match"), *config.get("sources", []), *config.get("targets", []),
              *(config.get("also_against") or [])]
    prints = {m: f for m in models if isinstance(m, str) and (f := model_fingerprint(m))}
    if prints:
        config["fingerprints"] = dict(sorted(prints.items()))
    if "match" in config and not str(config.get("model", "")).endswith(":match"):
        del config["match"]
    if config.get("kind") == "analyze":
        from robustnic.studies.analyze import SPECTRUM_STANDINS, attack_settings

        if config["standin"] not in SPECTRUM_STANDINS:
            raise RobustnicError(f"analyze: standin must be one of {', '.join(SPECTRUM_STANDINS)} (deterministic), "
                                 f"got {config['standin']!r}")
        if config["attack"] not in (None, "none"):  # raises on an unknown method or budget
            attack_settings(config["attack"], config["budget"], config["steps"], config["seed"], config["standin"])
    elif "attack" in config:
        _finish_attack(config)
    return config


def _finish_attack(config: dict[str, Any]) -> None:
    """Check an attack configuration, fingerprint its target and mask images, and leave out the
    options added after the grid's first release while they hold their defaults, so that the
    configurations (and keys) of specs that do not use them stay as they were."""
    for key, default in _ATTACK_OPTIONAL.items():
        if key in config and config[key] == default:
            del config[key]
    also = config.get("also_against")
    if also and config.get("kind", "attack") != "attack":
        raise RobustnicError(f"'also_against' applies to attack studies, not to {config['kind']!r}")
    if also and config.get("adaptive"):
        raise RobustnicError("'also_against' (one perturbation for several models) does not combine with "
                             "'adaptive' (the worst over a defense's attack modes): run them as two studies")
    for key in ("target", "mask"):
        value = config.get(key)
        if isinstance(value, str) and not (key == "mask" and _is_rectangle(value)):
            refs = resolve_images(value)
            if len(refs) != 1:
                raise RobustnicError(f"{key!r} must name one image, {value!r} names {len(refs)}")
            config[key] = refs[0]
        elif value is not None and not isinstance(value, (str, dict)):
            raise RobustnicError(f"{key!r} must be an image (file or bundled:NAME){' or L,T,R,B' * (key == 'mask')}, "
                                 f"got {value!r}")
    if config.get("objective") == "targeted" and not config.get("target"):
        raise RobustnicError("the targeted objective needs 'target' (an image file or bundled:NAME)")
    _attack_settings(config, placeholder=True)  # raises on an unknown method, budget, objective, ...


def _is_rectangle(spec: str) -> bool:
    parts = spec.split(",")
    return len(parts) == 4 and all(p.strip().lstrip("-").isdigit() for p in parts)


def _image_result(codec: Codec, x: torch.Tensor) -> tuple[dict[str, Any], dict[str, float]]:
    from robustnic.codecs.evaluate import evaluate_image

    row = evaluate_image(codec, x)
    timing = {k: row.pop(k) for k in ("encoding_time", "decoding_time")}
    return row, timing


def run_rd(config: dict[str, Any], device: str) -> JobOutput:
    """Clean RD of a (defended) codec on one image, from real bitstreams."""
    codec = build_codec(config["model"], config["defense"], config["seed"], device)
    x = load_ref(config["image"], config["crop"])
    result, timing = _image_result(codec, x)
    return JobOutput(result | {"codec": codec.name}, timing=timing)


def _attack_settings(config: dict[str, Any], size: tuple[int, int] | None = None, placeholder: bool = False):
    """The :class:`~robustnic.attacks.AttackSettings` of an attack configuration (its target and
    mask loaded at ``crop``; ``size``: the images' ``(H, W)`` for a mask rectangle). With
    ``placeholder`` the images are not loaded (a check of the configuration)."""
    from robustnic.attacks.pipeline import AttackSettings, parse_mask

    target = mask = None
    if placeholder:
        target = torch.zeros(1, 3, 1, 1) if config.get("target") else None
    else:
        if config.get("target"):
            target = load_ref(config["target"], config["crop"])
        spec = config.get("mask")
        if spec is not None:
            spec = spec if isinstance(spec, str) else str(ref_path(spec))
            mask = parse_mask(spec, size or tuple(target.shape[-2:]), crop=config["crop"])
    return AttackSettings(
        method=config["attack"], budget=config["budget"], steps=config.get("steps"),
        restarts=config.get("restarts", _ATTACK_OPTIONAL["restarts"]), objective=config["objective"],
        reference=config.get("reference", _ATTACK_OPTIONAL["reference"]),
        metric=config.get("metric", _ATTACK_OPTIONAL["metric"]), standin=config["standin"], seed=config["seed"],
        target=target, mask=mask, color=config.get("color", _ATTACK_OPTIONAL["color"]),
        rd_weight=config.get("rd_weight", _ATTACK_OPTIONAL["rd_weight"]),
    )


def run_attack(config: dict[str, Any], device: str) -> JobOutput:
    """Attack one image and verify it on real bitstreams through the (defended) codec, with
    :func:`robustnic.attacks.attack_and_verify`.

    With ``adaptive = true`` the attack is run in every attack mode of the defense (through it and
    around it) and the most damaging one is kept (``attack-mode`` in the result); otherwise it is
    crafted on the undefended model and the defense meets it unprepared.
    """
    from robustnic.attacks.pipeline import attack_and_verify

    defended = build_codec(config["model"], config["defense"], config["seed"], device)
    x = load_ref(config["image"], config["crop"])
    settings = _attack_settings(config, tuple(x.shape[-2:]))
    attacked = defended
    if config.get("also_against"):  # agnostic-ratio attack: crafted on all, measured on ``model``
        from robustnic.attacks.ensemble_models import CodecFamily

        others = [build_codec(m, "none", config["seed"], device) for m in config["also_against"]]
        attacked = CodecFamily([defended, *others])
    out = attack_and_verify(attacked, x, settings, adaptive=bool(config["adaptive"]))
    verified = out.verified[0]
    result = _json_values(verified.row)
    timing = {k: result.pop(k) for k in list(result) if "time" in k} | {"attack-time": out.elapsed}
    artifacts = [
        Artifact("source.png", png_bytes(x)),
        Artifact("adversarial.png", png_bytes(out.x_adv)),
        Artifact("reconstruction-clean.png", png_bytes(verified.clean.x_hat)),
        Artifact("reconstruction-adversarial.png", png_bytes(verified.adv.x_hat)),
    ]
    return JobOutput(result | {"codec": defended.name}, artifacts, timing)


def run_recompression(config: dict[str, Any], device: str) -> JobOutput:
    """Re-encode one image for ``generations`` generations; classical ``fmt:match`` models first pick
    the quality whose first-generation bpp is closest to the ``match`` model's."""
    from robustnic.studies.recompression import first_generation_bpp, match_quality, recompress

    x = load_ref(config["image"], config["crop"])
    extra: dict[str, Any] = {}
    if str(config["model"]).endswith(":match"):
        if not config.get("match"):
            raise RobustnicError(f"model {config['model']!r} needs 'match' = the model whose bpp to match")
        fmt = config["model"].split(":", 1)[0]
        reference = build_codec(config["match"], "none", config["seed"], device)
        target = first_generation_bpp(reference, x)
        codec, bpp = match_quality(fmt, x, target)
        codec = apply_defense(codec, config["defense"])
        extra = {"matched-quality": codec.quality, "matched-target-bpp": target, "matched-bpp": bpp}
    else:
        codec = build_codec(config["model"], config["defense"], config["seed"], device)
    snapshots = tuple(int(g) for g in config["snapshots"])
    res = recompress(codec, x, int(config["generations"]), snapshots)
    result = {"codec": codec.name, "psnr": res.psnr, "bpp": res.bpp} | res.summary() | extra
    artifacts = [Artifact("generation-000.png", png_bytes(x))]
    artifacts += [Artifact(f"generation-{g:03d}.png", png_bytes(img)) for g, img in sorted(res.snapshots.items())]
    return JobOutput(result, artifacts)


def run_transfer_image(config: dict[str, Any], device: str) -> JobOutput:
    """Cross-image transfer: see :func:`robustnic.studies.transfer.transfer_across_images`."""
    from robustnic.studies.transfer import transfer_across_images

    codec = build_codec(config["model"], config["defense"], config["seed"], device)
    images = {ref["name"]: load_ref(ref, config["crop"]) for ref in config["images"]}
    settings = _attack_settings(config, tuple(next(iter(images.values())).shape[-2:]))
    matrix = transfer_across_images(codec, settings, images, adaptive=bool(config["adaptive"]))
    return JobOutput(matrix.as_dict())


def run_transfer_model(config: dict[str, Any], device: str) -> JobOutput:
    """Cross-model transfer: see :func:`robustnic.studies.transfer.transfer_across_models`."""
    from robustnic.studies.transfer import transfer_across_models

    x = load_ref(config["image"], config["crop"])
    sources = {s: build_codec(s, "none", config["seed"], device) for s in config["sources"]}
    targets = {t: build_codec(t, "none", config["seed"], device) for t in config["targets"]}
    matrix = transfer_across_models(sources, targets, _attack_settings(config, tuple(x.shape[-2:])), x)
    return JobOutput(matrix.as_dict())


def run_analyze(config: dict[str, Any], device: str) -> JobOutput:
    """Diagnostics of one image: :func:`robustnic.studies.analyze.analyze_image` (the Jacobian's top
    singular values and worst-case gain, the attack's VI on real bitstreams, the layer magnify ratios;
    ``attack = "none"``: the spectrum alone)."""
    from robustnic.studies.analyze import analyze_image, attack_settings

    codec = build_codec(config["model"], "none", config["seed"], device)
    x = load_ref(config["image"], config["crop"])
    settings = None if config["attack"] in (None, "none") else attack_settings(
        config["attack"], config["budget"], config["steps"], config["seed"], config["standin"])
    row, layers, x_adv = analyze_image(codec, x, settings, k=int(config["k"]), iters=int(config["iters"]),
                                       tol=float(config["tol"]), seed=config["seed"], standin=config["standin"])
    result = _json_values(row) | {"codec": codec.name, "layers": layers}
    timing = {k: result.pop(k) for k in ("spectrum-time", "attack-time") if k in result}
    artifacts = [Artifact("adversarial.png", png_bytes(x_adv))] if x_adv is not None else []
    return JobOutput(result, artifacts, timing)


def _json_values(d: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, torch.Tensor):
            v = v.item() if v.numel() == 1 else v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        out[k] = v
    return out


#: Attack options added after the grid's first release: left out of a configuration at their default
#: (see :func:`_finish_attack`), so older specs keep their job keys.
_ATTACK_OPTIONAL = {"restarts": 1, "reference": "clean", "metric": "mse", "target": None, "mask": None,
                    "color": "rgb", "rd_weight": None, "also_against": None}
#: Parameters of every attacking kind: the options of ``robustnic attack`` (one settings object,
#: :class:`robustnic.attacks.AttackSettings`). ``adaptive``: worst over the defense's attack modes.
_ATTACK_PARAMS = {"objective": "distortion", "standin": "none", "steps": 100, "adaptive": False, **_ATTACK_OPTIONAL}

JOB_KINDS: dict[str, JobKind] = {
    k.name: k
    for k in [
        JobKind("rd", run_rd, ("model", "defense", "image"),
                {"defense": "none", "seed": 0, "crop": None}, doc="clean rate-distortion"),
        JobKind("attack", run_attack, ("model", "attack", "budget", "defense", "image"),
                {"defense": "none", "seed": 0, "crop": None, **_ATTACK_PARAMS}, doc="attack + verification"),
        JobKind("recompression", run_recompression, ("model", "defense", "image"),
                {"defense": "none", "seed": 0, "crop": None, "generations": 50, "match": None,
                 "snapshots": [1, 2, 5, 10, 20, 50]},
                lists=("snapshots",), doc="re-encoding over generations"),
        JobKind("transfer-image", run_transfer_image, ("model", "attack", "budget", "defense"),
                {"defense": "none", "seed": 0, "crop": None, "images": None, **_ATTACK_PARAMS},
                lists=("images",), doc="perturbations moved across images"),
        JobKind("transfer-model", run_transfer_model, ("attack", "budget", "image"),
                {"seed": 0, "crop": None, "sources": None, "targets": None, **_ATTACK_PARAMS},
                lists=("sources", "targets"),
                doc="adversarial images moved across models"),
        JobKind("analyze", run_analyze, ("model", "attack", "budget", "image"),
                {"attack": "paper", "budget": "psnr:35", "seed": 0, "crop": None, "steps": 20, "standin": "none",
                 "k": 3, "iters": 40, "tol": 1e-3},
                doc="amplification spectrum, attack VI and layer magnify ratios"),
    ]
}


def execute(kind: str, config: dict[str, Any], device: str = "cpu") -> JobOutput:
    """Run one job configuration."""
    if kind not in JOB_KINDS:
        raise RobustnicError(f"unknown job kind {kind!r}")
    return JOB_KINDS[kind].run(config, device)
