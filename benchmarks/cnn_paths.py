"""`make bench` section ``cnn``: what PyTorch's CPU paths buy the CNN, and whether bfloat16 keeps accuracy.

On the benchmark's 3 mm CNN grid: the time of one training step per sample (batch 4, one thread) in
float32, channels-last 3D, bfloat16 autocast and ``torch.compile`` (plus its compile time, paid once per
fold process); then the cross-validated balanced accuracy of the CNN trained in float32 and in bfloat16
on the same subject-level folds of planted cohorts (a +1 and a +2 SD localised blob, and a null); and the
first architecture against the default on a +1 SD blob (:func:`architectures`).
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import replace

import numpy as np
import torch

from strokefc_sim.planted import blob_cohort
from workflows import cnn
from workflows.cross_validation import cross_validate, subject_folds

FULL = {"shape": (49, 60, 53), "n": 48, "folds": 5, "steps": 6}
QUICK = {"shape": (24, 28, 24), "n": 24, "folds": 2, "steps": 3}
EFFECTS = (0.0, 1.0, 2.0)


def _step_ms(shape, variant: str, steps: int) -> tuple[float, float]:
    """(CPU ms per sample of a training step, one-off setup seconds) for a batch of 4, one thread."""
    torch.manual_seed(0)
    model = cnn.model_for(shape, cnn.TrainSettings())
    x = torch.randn(4, 1, *shape)
    y = torch.tensor([0, 1, 0, 1])
    if variant == "channels-last":
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    forward = lambda z: model.head(model.features(z))  # noqa: E731
    setup = 0.0
    if variant == "compiled":
        forward = torch.compile(forward)
        t = time.perf_counter()
        forward(x).sum().backward()  # compilation
        setup = time.perf_counter() - t
    optimiser = torch.optim.AdamW(model.parameters(), lr=1e-3)
    criterion = torch.nn.CrossEntropyLoss()
    model.train()
    cpu = 0.0
    for i in range(steps + 1):
        t = time.process_time()
        optimiser.zero_grad()
        ctx = (
            torch.autocast("cpu", dtype=torch.bfloat16) if variant == "bfloat16" else contextlib.nullcontext()
        )
        with ctx:
            loss = criterion(forward(x), y)
        loss.backward()
        optimiser.step()
        cpu += (time.process_time() - t) if i else 0.0  # the first step warms up
    return 1000 * cpu / steps / 4, setup


def _cv(effect: float, precision: str, p: dict) -> dict:
    """Balanced accuracy (mean over folds) and CPU time of one subject-level CV of the default CNN."""
    centre = [s // 3 for s in p["shape"]]
    radius = 2.5 * p["shape"][0] / 24  # the same share of the grid as the unit test's 81-voxel ball
    x, y, groups = blob_cohort(effect, n=p["n"], shape=p["shape"], centre=centre, radius=radius)
    return _cv_of(x, y, groups, cnn.TrainSettings(device="cpu", precision=precision), p["folds"])


def _cv_of(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, settings: cnn.TrainSettings, n_folds: int
) -> dict:
    """Balanced accuracy (mean over subject-level folds) and CPU time of the CNN trained with ``settings``."""

    def fit_predict(x_train, y_train, g_train, x_test, seed):
        model, curve = cnn.train_model(x_train, y_train, g_train, replace(settings, seed=seed))
        return cnn.predict_proba(model, x_test), curve

    folds = subject_folds(y, groups, n_folds, 1, seed=0)
    t = time.process_time()
    _, metrics, _ = cross_validate(x, y, groups, folds, {"cnn": fit_predict})
    return {
        "balanced_accuracy": float(np.mean([m["balanced_accuracy"] for m in metrics])),
        "cpu_s": time.process_time() - t,
    }


def architectures() -> dict:
    """The first architecture (max-pooling, global average pooling, random shifts) against the default on
    a weaker (+1 SD) blob, on the unit test's cohort (48 subjects, 24x28x24, 5 folds): the default should
    do better. Moved here from tests/test_cnn.py, which keeps the default's +2 SD and null controls."""
    x, y, groups = blob_cohort(1.0)
    first = cnn.TrainSettings(device="cpu", pool=1, downsample="max", shift_vox=1)
    return {
        "first": _cv_of(x, y, groups, first, 5),
        "default": _cv_of(x, y, groups, cnn.TrainSettings(device="cpu"), 5),
    }


def bench_cnn(quick: bool = False) -> dict:
    p = QUICK if quick else FULL
    torch.set_num_threads(1)
    steps = {}
    compile_s = float("nan")
    for variant in ("float32", "channels-last", "bfloat16", "compiled"):
        try:
            steps[variant], setup = _step_ms(p["shape"], variant, p["steps"])
        except Exception as exc:  # noqa: BLE001  (torch.compile needs a C++ toolchain; say so, keep the rest)
            steps[variant] = float("nan")
            print(f"  {variant}: {type(exc).__name__}: {exc}", flush=True)
            continue
        if variant == "compiled":
            compile_s = setup
    controls = {
        f"{effect:+g} SD": {prec: _cv(effect, prec, p) for prec in ("float32", "bfloat16")}
        for effect in EFFECTS
    }
    return {
        "shape": "x".join(map(str, p["shape"])),
        "n": p["n"],
        "folds": p["folds"],
        "step_ms": steps,
        "compile_s": compile_s,
        "controls": controls,
        "architectures": architectures(),
    }


def rows(c: dict) -> list[tuple[str, str, str, str]]:
    """Summary-table rows: step-time ratios, then balanced accuracy float32 vs bfloat16 per cohort."""
    base = c["step_ms"]["float32"]
    out = [
        (
            f"CNN training step ({c['shape']}, 1 thread)",
            ", ".join(f"{k} {v:.1f}" for k, v in c["step_ms"].items())
            + f" ms/sample; compile {c['compile_s']:.0f} s",
            "",
            "",
        ),
        ("  bfloat16 speed-up", f"{base / c['step_ms']['bfloat16']:.2f}x", "", ""),
    ]
    for name, by in c["controls"].items():
        f32, bf = by["float32"]["balanced_accuracy"], by["bfloat16"]["balanced_accuracy"]
        out.append(
            (
                f"  CNN BA, {name} blob ({c['n']} subj, {c['folds']} folds)",
                f"float32 {f32:.2f}, bfloat16 {bf:.2f}",
                "|diff| <= 0.05",
                "same" if abs(f32 - bf) <= 0.05 else "DIFFERS",
            )
        )
    arch = c.get("architectures")
    if arch:
        first, default = arch["first"]["balanced_accuracy"], arch["default"]["balanced_accuracy"]
        out.append(
            (
                "  CNN BA, +1 SD blob (48 subj 24x28x24, 5 folds)",
                f"first architecture {first:.2f}, default {default:.2f}",
                "default > first",
                "ok" if default > first else "MISSED",
            )
        )
    return out
