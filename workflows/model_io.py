"""Safe model export and loading: safetensors weights + a JSON model card holding their SHA-256.

Nothing is ever unpickled: weights are read with :func:`safetensors.torch.load_file` only after their
checksum matches the card, and pickle-based files (``.pt``, ``.pth``, ``.pkl``, ...) are refused.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from workflows.cnn import StrokeCNN, build_model
from workflows.utils.atomic import atomic_path, atomic_write
from workflows.utils.errors import InputError
from workflows.utils.io import sha256

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model_card.json"
#: Version of the card layout; a card with another version is refused.
CARD_VERSION = 1
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")


def save_model(model: StrokeCNN, card: dict, out_dir: Path | str) -> Path:
    """Write ``model.safetensors`` and ``model_card.json`` (with ``WeightsSHA256``) into ``out_dir``.

    The card is completed with the architecture, the card version and the checksum; files are
    written to temporary names and renamed, so a crash never leaves a half-written model.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_NAME
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # one metadata key only: safetensors writes metadata from a hash map, so two keys come out in a
    # random order and the file's SHA-256 (the model id) would differ between identical trainings
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": "pt"})
    card = {
        **card,
        "CardVersion": CARD_VERSION,
        "architecture": model.architecture(),
        "WeightsFile": WEIGHTS_NAME,
        "WeightsSHA256": sha256(weights),
    }
    with atomic_write(out_dir / CARD_NAME) as fh:
        fh.write(json.dumps(json_clean(card), indent=2, sort_keys=True, allow_nan=False))
    return out_dir


def json_clean(obj: Any) -> Any:
    """A copy with NaN/inf floats replaced by None and NumPy scalars/arrays as Python values (valid JSON)."""
    if isinstance(obj, dict):
        return {str(k): json_clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_clean(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _model_dir(path: Path | str) -> Path:
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise InputError(
            f"{path.name} is a pickle-based file; strokefc never unpickles model files "
            "(they can run arbitrary code)",
            str(path),
            f"give the directory holding {WEIGHTS_NAME} and {CARD_NAME} written by 'strokefc ... group'",
        )
    if path.is_file() and path.name in (WEIGHTS_NAME, CARD_NAME):
        path = path.parent
    if not path.is_dir():
        raise InputError(
            "the model directory does not exist",
            str(path),
            "give the 'model' directory of a group-level output (OUTPUT_DIR/model)",
        )
    return path


def read_card(model_dir: Path | str) -> dict:
    """The model card of a model directory, checked for its version and required keys."""
    model_dir = _model_dir(model_dir)
    card_path = model_dir / CARD_NAME
    if not card_path.exists():
        pickles = sorted(p.name for p in model_dir.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        extra = (
            f" (found pickle-based file(s) {', '.join(pickles)}, which strokefc refuses to load)"
            if pickles
            else ""
        )
        raise InputError(
            f"no {CARD_NAME} in the model directory{extra}",
            str(model_dir),
            "use a model directory written by 'strokefc ... group'",
        )
    try:
        card = json.loads(card_path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(
            f"the model card cannot be read ({exc})",
            str(card_path),
            "re-export the model with 'strokefc ... group'",
        ) from None
    if card.get("CardVersion") != CARD_VERSION:
        raise InputError(
            f"model card version {card.get('CardVersion')!r} is not supported by this "
            f"strokefc (expects {CARD_VERSION})",
            str(card_path),
            "retrain the model with this strokefc version, or use the version that wrote it",
        )
    for key in ("architecture", "input", "WeightsSHA256"):
        if key not in card:
            raise InputError(
                f"the model card lacks {key!r}",
                str(card_path),
                "re-export the model with 'strokefc ... group'",
            )
    return card


def load_model(model_dir: Path | str) -> tuple[StrokeCNN, dict]:
    """Load a model safely: card checked, weights' SHA-256 verified, safetensors only.

    Returns ``(model, card)``; the model is in evaluation mode on the CPU.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    model_dir = _model_dir(model_dir)
    card = read_card(model_dir)
    weights = model_dir / card.get("WeightsFile", WEIGHTS_NAME)
    if weights.suffix.lower() in PICKLE_SUFFIXES or weights.name != WEIGHTS_NAME:
        raise InputError(
            f"the card points at {weights.name}; only {WEIGHTS_NAME} (safetensors) is loaded",
            str(model_dir / CARD_NAME),
            "re-export the model with 'strokefc ... group'",
        )
    if not weights.exists():
        raise InputError(
            f"the weights file {WEIGHTS_NAME} is missing",
            str(model_dir),
            "copy the whole model directory (weights and card together)",
        )
    actual = sha256(weights)
    if actual != card["WeightsSHA256"]:
        raise InputError(
            f"the weights' SHA-256 ({actual[:12]}...) does not match the model card "
            f"({str(card['WeightsSHA256'])[:12]}...): the file was modified or comes from "
            "another model",
            str(weights),
            "use the weights and card written together by 'strokefc ... group'",
        )
    try:
        model = build_model(card["architecture"])
        state = load_file(str(weights))
        model.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"the weights do not fit the architecture in the card ({exc})",
            str(weights),
            "re-export the model with 'strokefc ... group'",
        ) from None
    model.eval()
    return model, card


def template_name(space: str | None) -> str:
    """The template of a space label, without a resolution or cohort (``MNI152NLin2009cAsym:res-2``)."""
    return str(space or "").split(":")[0]


def check_card_compatible(
    card: dict, *, space: str, dfc_params: dict | None = None, tr: float | None = None
) -> None:
    """Refuse a model whose card does not match the subject's space (template) or dFC parameters.

    The grid is not compared: maps at another resolution or field of view are resampled to the model
    grid (:func:`workflows.prediction.predict_subject` records it). A window given in seconds becomes
    whole volumes, so at another repetition time ``tr`` its length may differ by up to half a volume.
    """
    where = "model_card.json"
    inp = card.get("input", {})
    problems = []
    if inp.get("space") and space and template_name(inp["space"]) != template_name(space):
        problems.append(f"space: model {inp['space']!r} vs subject {space!r}")
    for key, expected in (card.get("dfc_parameters") or {}).items():
        got = (dfc_params or {}).get(key, expected)
        if key == "Space":
            same = template_name(got) == template_name(expected)
        elif key == "WindowLength_s" and tr:
            same = _same_number(got, expected, tolerance=tr / 2)
        else:
            same = got == expected or _same_number(got, expected)
        if not same:
            problems.append(f"{key}: model {expected!r} vs subject {got!r}")
    if problems:
        raise InputError(
            "the model does not match this subject's maps: " + "; ".join(dict.fromkeys(problems)),
            where,
            "run the participant level with the model's options (listed in its card) "
            "or train a model on matching maps",
        )


def _same_number(a: Any, b: Any, tolerance: float = 0.0) -> bool:
    try:
        return abs(float(a) - float(b)) <= tolerance + 1e-6 * max(1.0, abs(float(b)))
    except (TypeError, ValueError):
        return False
