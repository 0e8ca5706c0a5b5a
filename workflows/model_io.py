"""Safe model export and loading: safetensors weights + a JSON model card bound to them.

Nothing is ever unpickled: weights are read with safetensors only after their checksum matches the card,
and pickle-based files (``.pt``, ``.pth``, ``.pkl``, ...) are refused. The card names its weights by a
plain file name inside the model folder (:func:`weights_path`), and its ``ModelId`` is a SHA-256 over the
weights' checksum and every card field that changes a prediction (:data:`PREDICTION_FIELDS`:
label threshold, grid, preprocessing, map, features, ...): editing any of them is refused at load
(:func:`check_model_id`). Two kinds of model are written: the CNN (:func:`save_model`, PyTorch tensors)
and array models such as the primary parcel model (:func:`save_arrays`, plain NumPy arrays).
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workflows.utils.atomic import atomic_path, atomic_write
from workflows.utils.errors import InputError
from workflows.utils.io import sha256

if TYPE_CHECKING:  # PyTorch is imported by the functions that need it: reading a card does not
    from workflows.cnn import StrokeCNN

WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "model_card.json"
#: Version of the card layout; a card with another version is refused (2: ModelType and ModelId).
CARD_VERSION = 2
#: ``ModelType`` of the CNN's card (array models name their own, e.g. the parcel model's).
CNN_TYPE = "cnn"
#: Card fields that change a prediction; :func:`model_id` hashes them with the weights' checksum.
PREDICTION_FIELDS = ("ModelType", "target", "input", "label", "dfc_parameters", "features", "architecture")
#: Fields that change a prediction when present, bound to the model id only then (cards written before
#: they existed keep their id): the conformal calibration (workflows.conformal).
OPTIONAL_PREDICTION_FIELDS = ("conformal",)
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin", ".joblib")


def save_model(model: StrokeCNN, card: dict, out_dir: Path | str) -> Path:
    """Write the CNN's weights and card into ``out_dir`` (:func:`write_model`)."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    # one metadata key only: safetensors writes metadata from a hash map, so two keys come out in a
    # random order and the file's SHA-256 (the model id) would differ between identical trainings
    return write_model(
        lambda path: save_file(state, str(path), metadata={"format": "pt"}),
        {**card, "ModelType": CNN_TYPE, "architecture": model.architecture()},
        out_dir,
    )


def save_arrays(arrays: dict[str, np.ndarray], card: dict, out_dir: Path | str) -> Path:
    """Write an array model (NumPy arrays as safetensors, no pickle) and its card (:func:`write_model`)."""
    from safetensors.numpy import save_file

    tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    return write_model(lambda path: save_file(tensors, str(path), metadata={"format": "np"}), card, out_dir)


def write_model(write_weights: Any, card: dict, out_dir: Path | str) -> Path:
    """Write the weights (``write_weights(path)``) and ``model_card.json`` into ``out_dir``.

    The card is completed with its version, the weights' file name and SHA-256 and the model id
    (:func:`model_id`); files are written to temporary names and renamed, so a crash never leaves a
    half-written model.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / WEIGHTS_NAME
    with atomic_path(weights) as tmp:
        write_weights(tmp)
    card = json_clean(
        {**card, "CardVersion": CARD_VERSION, "WeightsFile": WEIGHTS_NAME, "WeightsSHA256": sha256(weights)}
    )
    card["ModelId"] = model_id(card)
    with atomic_write(out_dir / CARD_NAME) as fh:
        fh.write(json.dumps(card, indent=2, sort_keys=True, allow_nan=False))
    return out_dir


def model_id(card: dict) -> str:
    """SHA-256 over the weights' checksum and every card field that changes a prediction.

    The fields are :data:`PREDICTION_FIELDS` (what the model is, its input grid and preprocessing, the
    label rule and threshold, the dFC parameters its maps need, its features), as canonical JSON.
    """
    bound = {key: card.get(key) for key in PREDICTION_FIELDS}
    bound.update({key: card[key] for key in OPTIONAL_PREDICTION_FIELDS if key in card})
    text = json.dumps(
        json_clean({"WeightsSHA256": card.get("WeightsSHA256"), **bound}),
        sort_keys=True,
        separators=(",", ":"),
        allow_nan=False,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def check_model_id(card: dict, where: str) -> None:
    """Refuse a card whose ``ModelId`` does not match its weights' checksum and prediction fields."""
    expected = model_id(card)
    if card.get("ModelId") != expected:
        raise InputError(
            f"the model card was edited after export: its ModelId ({str(card.get('ModelId'))[:12]}...) "
            f"does not match the weights and the fields that change a prediction "
            f"({', '.join(PREDICTION_FIELDS)}; recomputed {expected[:12]}...), e.g. a changed "
            "label.severe_threshold",
            where,
            "use the card written with the weights by 'strokefc ... group' (or retrain the model with "
            "the settings you need)",
        )


def weights_path(model_dir: Path, card: dict) -> Path:
    """The card's weights file: a plain file name inside ``model_dir``, never a path or a link out of it."""
    name = card.get("WeightsFile", WEIGHTS_NAME)
    where = str(model_dir / CARD_NAME)
    plain = (
        isinstance(name, str)
        and name not in ("", ".", "..")
        and "/" not in name
        and "\\" not in name
        and not Path(name).is_absolute()
        and Path(name).name == name
    )
    if not plain:
        raise InputError(
            f"the card's WeightsFile {name!r} is not a plain file name inside the model folder",
            where,
            f"set WeightsFile to {WEIGHTS_NAME!r} and keep the weights beside the card in one folder "
            "(copy the whole model folder written by 'strokefc ... group')",
        )
    weights = model_dir / name
    if weights.suffix.lower() in PICKLE_SUFFIXES or name != WEIGHTS_NAME:
        raise InputError(
            f"the card points at {name}; only {WEIGHTS_NAME} (safetensors) is loaded",
            where,
            "re-export the model with 'strokefc ... group'",
        )
    if weights.is_symlink() and model_dir.resolve() not in weights.resolve().parents:
        raise InputError(
            f"{WEIGHTS_NAME} is a link to {weights.resolve()}, outside the model folder",
            str(weights),
            "copy the weights file itself into the model folder (the folder must hold the model)",
        )
    return weights


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
    for key in ("ModelType", "input", "WeightsSHA256", "ModelId"):
        if key not in card:
            raise InputError(
                f"the model card lacks {key!r}",
                str(card_path),
                "re-export the model with 'strokefc ... group'",
            )
    check_model_id(card, str(card_path))
    weights_path(model_dir, card)
    return card


def load_model(model_dir: Path | str) -> tuple[StrokeCNN, dict]:
    """Load a model safely: card checked, weights' SHA-256 verified, safetensors only.

    Returns ``(model, card)``; the model is in evaluation mode on the CPU.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from workflows.cnn import build_model

    model_dir = _model_dir(model_dir)
    card, weights = _verified(model_dir)
    if card["ModelType"] != CNN_TYPE:
        raise InputError(
            f"this is a {card['ModelType']} model, not a CNN",
            str(model_dir / CARD_NAME),
            "load it with workflows.model_io.load_arrays (participant --model does)",
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


def load_arrays(model_dir: Path | str) -> tuple[dict[str, np.ndarray], dict]:
    """Load an array model safely (card and checksum verified, safetensors only): ``(arrays, card)``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    model_dir = _model_dir(model_dir)
    card, weights = _verified(model_dir)
    try:
        return dict(load_file(str(weights))), card
    except (SafetensorError, OSError, ValueError) as exc:
        raise InputError(
            f"the weights cannot be read as NumPy arrays ({exc})",
            str(weights),
            "re-export the model with 'strokefc ... group'",
        ) from None


def _verified(model_dir: Path) -> tuple[dict, Path]:
    """The card (version, fields, model id checked) and its weights file, whose SHA-256 matches it."""
    card = read_card(model_dir)
    weights = weights_path(model_dir, card)
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
    return card, weights


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
