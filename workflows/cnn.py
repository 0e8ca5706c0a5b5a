"""A compact 3D CNN for dFC variability maps: model, deterministic training loop, prediction.

Architecture (:class:`StrokeCNN`): a voxelwise z-score whose mean and SD are buffers fit on the training
data only (so they travel with the weights), 4 blocks of Conv3d(3^3)-BatchNorm-ReLU-downsample(2)
(the first block downsamples with a stride-2 convolution, ~5x faster on CPU than a stride-1
convolution followed by pooling; the others average-pool), then a head that keeps *where* features
are: the last feature maps are averaged onto a coarse ``pool^3`` grid (2 x 2 x 2 by default), flattened,
dropped out and fed to a linear layer giving two logits (mild-to-moderate, severe), or, for UL-FMA
regression (``n_classes=1``), one output: the standardised score, turned back into UL-FMA points by the
buffers ``target_mean``/``target_std`` (fit on the training samples only, like the input z-score).

Why: after the voxelwise z-score every voxel has the same marginal distribution, so the information is
in *where* values are high. The first version (max-pooling, global average pooling, random shifts) could
only learn global shifts and stayed at chance on a localised effect. On 48 synthetic subjects with an
81-voxel blob (5-fold CV, i.i.d. voxel noise), average-pooled downsampling with the 2^3 head and no
shifts reached balanced accuracy 1.00 at +2 SD and 0.74 at +1 SD (global pooling with shifts: 0.96 and
0.65; max-pooling with the 2^3 head: 0.61 at +2 SD), and 0.37-0.6 on a null; see tests/test_cnn.py.

Training (:func:`train_model`): weighted cross-entropy (class weights n / (2 n_c)), AdamW with weight
decay, dropout, Gaussian noise of ``noise`` z-units as augmentation (no shifts by default: they blur
the alignment a location-aware head relies on; never left-right flips, which would undo the lesion
alignment), early stopping on a validation split of whole subjects taken from the training data it is
given, restoring the best epoch. Regression (``train_model(..., regression=True)``) uses the same loop
with a Huber loss on the standardised score and no class weights.
Deterministic for a given seed on CPU and on CUDA, and the same model on both up to float rounding.
PyTorch's CUDA backward passes of ``AvgPool3d`` and ``AdaptiveAvgPool3d`` accumulate with atomics (no
deterministic implementation: two CUDA trainings of one seed differed), so on CUDA the pools average
with fixed per-axis averaging matrices (:class:`MeanPool3d`, :class:`AdaptiveMeanPool3d`: the same
function, whose backward pass is a matrix product); on CPU they are PyTorch's pools, unchanged. Every
random draw (batch order, noise, dropout masks) comes from the CPU's generators on either device, so a
CUDA training sees the CPU's draws (:func:`_augment`, :class:`CpuDrawnDropout`), and TF32 is off during
training. ``CUBLAS_WORKSPACE_CONFIG`` is set before CUDA starts and deterministic algorithms are asked
for (``warn_only`` on CUDA: an op a future PyTorch flags is recorded (:func:`nondeterministic_ops`) and
the model card then says "partial on CUDA"). Training data stay on the device for the whole training.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from workflows.params import TrainSettings
from workflows.utils.errors import InputError, check_choice

#: BatchNorm running-statistics momentum: higher than PyTorch's 0.1 because an epoch has only a few
#: batches on cohorts of tens of subjects, and stale running statistics make the validation loss erratic.
BN_MOMENTUM = 0.3


@functools.lru_cache(maxsize=64)
def _mean_matrix(bins: tuple[tuple[int, int], ...], n_in: int, device: torch.device) -> torch.Tensor:
    """(len(bins), n_in) matrix whose row i averages the inputs ``bins[i] = (start, end)``.

    Cached: made once per grid and device (a copy to the GPU at every forward pass doubled a step).
    """
    m = torch.zeros(len(bins), n_in, dtype=torch.float32)
    for i, (start, end) in enumerate(bins):
        m[i, start:end] = 1.0 / (end - start)
    return m.to(device)


def separable_mean(x: torch.Tensor, bins: Sequence[tuple[tuple[int, int], ...]]) -> torch.Tensor:
    """Box means of ``x`` (N, C, X, Y, Z) over ``bins`` per axis, as three matrix products.

    A box mean is the product of per-axis means, so a pool is three averaging matrices; their backward
    pass is a matrix product, deterministic on CUDA (PyTorch's CUDA pool backward passes are not).
    """
    mats = [_mean_matrix(b, n, x.device) for b, n in zip(bins, x.shape[2:])]
    return torch.einsum("ncxyz,ax,by,kz->ncabk", x, *mats)


class MeanPool3d(nn.AvgPool3d):
    """``AvgPool3d(kernel, stride=kernel, ceil_mode=True)``, deterministic on CUDA (:func:`separable_mean`).

    With ``ceil_mode`` a window that overhangs the edge averages the voxels it covers, as PyTorch's does.
    """

    def __init__(self, kernel: tuple[int, int, int]) -> None:
        super().__init__(kernel, stride=kernel, ceil_mode=True)

    def bins(self, shape: Sequence[int]) -> list[tuple[tuple[int, int], ...]]:
        """Per axis, the (start, end) of each window over an input of spatial ``shape``."""
        return [
            tuple((s, min(s + k, n)) for s in range(0, n, k))
            for k, n in zip(self.kernel_size, shape)  # type: ignore[arg-type]
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return separable_mean(x, self.bins(x.shape[2:])) if x.is_cuda else super().forward(x)


class AdaptiveMeanPool3d(nn.AdaptiveAvgPool3d):
    """``AdaptiveAvgPool3d(size)``, deterministic on CUDA: PyTorch's bins, averaged by matrices."""

    def bins(self, shape: Sequence[int]) -> list[tuple[tuple[int, int], ...]]:
        """Per axis, PyTorch's adaptive bins: [floor(i n / o), ceil((i + 1) n / o))."""
        out = self.output_size
        size = [int(o) for o in out] if isinstance(out, tuple) else [int(out)] * 3  # type: ignore[arg-type]
        return [tuple((i * n // o, -(-(i + 1) * n // o)) for i in range(o)) for o, n in zip(size, shape)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return separable_mean(x, self.bins(x.shape[2:])) if x.is_cuda else super().forward(x)


class CpuDrawnDropout(nn.Dropout):
    """Dropout whose mask is drawn from the CPU's generator on every device, as CPU dropout draws it
    (``empty_like(x).bernoulli_(1 - p) / (1 - p)``): a CUDA training drops the units a CPU training
    of the same seed drops. The masks are small (the head's flattened features)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return cpu_drawn_dropout(x, self.p) if x.is_cuda and self.training else super().forward(x)


def cpu_drawn_dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """``x`` times a dropout mask drawn on the CPU (default generator) and moved to ``x``'s device."""
    if p == 1.0:
        return x * 0.0
    noise = torch.empty(x.shape, dtype=torch.float32).bernoulli_(1.0 - p)
    noise.div_(1.0 - p)
    return x * noise.to(device=x.device, dtype=x.dtype)


class StrokeCNN(nn.Module):
    """Voxelwise z-score -> 4 x (Conv3d-BN-ReLU-downsample) -> pool to a pool^3 grid -> dropout -> linear."""

    # buffers registered in __init__ (declared here for type checkers: nn.Module.__getattr__ is untyped)
    in_mean: torch.Tensor
    in_std: torch.Tensor
    target_mean: torch.Tensor  # regression only (n_classes == 1)
    target_std: torch.Tensor
    #: set by :func:`train_model`: the device, ``deterministic`` ("full" or "partial on CUDA") and the
    #: ops that had no deterministic implementation (for the model card)
    training_device: dict

    def __init__(
        self, in_shape: Sequence[int], settings: TrainSettings | None = None, n_classes: int = 2
    ) -> None:
        """The architecture (channels, dropout, pool, downsample) of ``settings`` (default: TrainSettings)."""
        super().__init__()
        settings = TrainSettings() if settings is None else settings
        self.pool = int(settings.pool)
        self.downsample = downsample = settings.downsample
        self.in_shape = tuple(int(s) for s in in_shape)
        self.channels = tuple(int(c) for c in settings.channels)
        self.dropout = float(settings.dropout)
        self.n_classes = int(n_classes)
        self.training_device = {}
        self.register_buffer("in_mean", torch.zeros(self.in_shape))
        self.register_buffer("in_std", torch.ones(self.in_shape))
        if self.n_classes == 1:  # regression: the score's training mean and SD travel with the weights
            self.register_buffer("target_mean", torch.zeros(()))
            self.register_buffer("target_std", torch.ones(()))
        layers, c_in = [], 1
        size = [int(v) for v in self.in_shape]  # grid size entering each block
        for i, c in enumerate(self.channels):
            a, b, c_ = (2 if v > 1 else 1 for v in size)  # a one-voxel axis is not pooled
            kernel = (a, b, c_)
            size = [(v + 1) // 2 for v in size]  # every block halves the grid (rounding up)
            if i == 0:  # strided first convolution: the same downsampling, ~5x faster on CPU than pooling
                layers += [
                    nn.Conv3d(c_in, c, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm3d(c, momentum=BN_MOMENTUM),
                    nn.ReLU(inplace=True),
                ]
            else:
                layers += [
                    nn.Conv3d(c_in, c, 3, padding=1, bias=False),
                    nn.BatchNorm3d(c, momentum=BN_MOMENTUM),
                    nn.ReLU(inplace=True),
                    nn.MaxPool3d(2, ceil_mode=True) if downsample == "max" else MeanPool3d(kernel),
                ]
            c_in = c
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            AdaptiveMeanPool3d(self.pool),
            nn.Flatten(),
            CpuDrawnDropout(self.dropout),
            nn.Linear(c_in * self.pool**3, self.n_classes),
        )

    def architecture(self) -> dict:
        """Constructor arguments, enough to rebuild the model from its card."""
        return {
            "name": "StrokeCNN",
            "in_shape": list(self.in_shape),
            "channels": list(self.channels),
            "dropout": self.dropout,
            "n_classes": self.n_classes,
            "pool": self.pool,
            "downsample": self.downsample,
            "n_parameters": count_parameters(self),
        }

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        """Voxelwise z-score; excluded voxels (NaN: a lesion or its mirror) become 0, the training mean."""
        return torch.nan_to_num((x - self.in_mean) / self.in_std, nan=0.0)

    def classify(self, z: torch.Tensor) -> torch.Tensor:
        """Logits from already z-scored input (training augments in z-space, see :func:`_augment`)."""
        z = z.unsqueeze(1) if z.dim() == 4 else z
        return self.head(self.features(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.normalise(x))


def model_for(in_shape: Sequence[int], settings: TrainSettings, n_classes: int = 2) -> StrokeCNN:
    """A fresh :class:`StrokeCNN` for inputs of ``in_shape`` with the architecture of ``settings``.

    ``n_classes=1`` gives the regression head (one output, the standardised score).
    """
    return StrokeCNN(in_shape, settings, n_classes=n_classes)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def build_model(architecture: dict) -> StrokeCNN:
    """Rebuild a model from :meth:`StrokeCNN.architecture` (as stored in the card)."""
    if architecture.get("name") != "StrokeCNN":
        raise ValueError(f"unknown architecture {architecture.get('name')!r}")
    settings = TrainSettings(
        channels=tuple(architecture["channels"]),
        dropout=architecture["dropout"],
        pool=architecture.get("pool", 1),  # cards written before the pooled-grid head had global pooling
        downsample=architecture.get("downsample", "max"),
    )
    return StrokeCNN(architecture["in_shape"], settings, n_classes=architecture.get("n_classes", 2))


def fit_normaliser(model: StrokeCNN, x_train: np.ndarray, eps: float = 1e-6) -> None:
    """Set the voxelwise z-score buffers from the training samples only (constant voxels get SD 1).

    Excluded voxels (NaN) do not count; a voxel excluded in every training sample gets mean 0, SD 1.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN voxels
        mean = np.nan_to_num(np.nanmean(x_train, axis=0))
        std = np.nan_to_num(np.nanstd(x_train, axis=0))
    std = np.where(std > eps, std, 1.0)
    model.in_mean.copy_(torch.from_numpy(mean.astype(np.float32)))
    model.in_std.copy_(torch.from_numpy(std.astype(np.float32)))


def resolve_device(device: str) -> torch.device:
    """``auto`` -> CUDA when present, else CPU; ``cuda`` without a CUDA device is an :class:`InputError`.

    Choosing CUDA sets ``CUBLAS_WORKSPACE_CONFIG`` first (:func:`configure_cuda`).
    """
    check_choice(device, DEVICES, "TrainSettings.device", "TrainSettings.device")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError(
            "TrainSettings.device cuda was asked for but no CUDA device is available",
            "TrainSettings.device",
            "use TrainSettings.device cpu or auto",
            params=("TrainSettings.device",),
        )
    if device == "cuda":
        configure_cuda()
    return torch.device(device)


#: Devices a training may ask for (:attr:`TrainSettings.device`).
DEVICES = ("auto", "cpu", "cuda")
#: cuBLAS's documented setting for reproducible results under deterministic algorithms (CUDA >= 10.2);
#: read when cuBLAS starts, so it is set before the first CUDA operation of the process.
CUBLAS_WORKSPACE = ":4096:8"


def configure_cuda() -> None:
    """Set ``CUBLAS_WORKSPACE_CONFIG`` (unless the user set it) so that cuBLAS can be deterministic."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


def determinism(device: torch.device, ops: Sequence[str] = ()) -> str:
    """What the model card records: ``full``, or ``partial on CUDA`` when CUDA ``ops`` had no
    deterministic implementation (see :func:`deterministic`)."""
    return "partial on CUDA" if device.type == "cuda" and ops else "full"


#: How PyTorch words the warning of an op without a deterministic implementation (``warn_only=True``).
_NONDETERMINISTIC = "does not have a deterministic implementation"


def nondeterministic_ops(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """The ops named by PyTorch's "no deterministic implementation" warnings, once each, in order."""
    ops: list[str] = []
    for w in caught:
        text = str(w.message)
        if _NONDETERMINISTIC in text:
            op = text.split(_NONDETERMINISTIC)[0].strip()
            if op not in ops:
                ops.append(op)
    return ops


@contextlib.contextmanager
def deterministic(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch and switch on deterministic algorithms for the duration of a block.

    Every op of the default architecture is deterministic on both devices (the pools on CUDA are
    :class:`MeanPool3d` and :class:`AdaptiveMeanPool3d`; ``downsample="max"``'s CUDA max-pool backward is
    not). On CPU a nondeterministic op would raise; on CUDA the switch is ``warn_only``, so that such an
    op is recorded (the card then says "partial on CUDA") rather than stopping a training.
    On CUDA, TF32 is switched off for the block (convolutions and matrix products in full float32, as
    on the CPU); the previous settings are restored after it.
    """
    previous = torch.are_deterministic_algorithms_enabled()
    previous_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    previous_tf32 = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    on_cuda = device is not None and device.type == "cuda"
    torch.manual_seed(seed)
    _use_deterministic_algorithms(True, warn_only=on_cuda)
    if on_cuda:
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        _use_deterministic_algorithms(previous, warn_only=previous_warn)
        torch.backends.cudnn.allow_tf32 = previous_tf32[0]
        torch.set_float32_matmul_precision(previous_tf32[1])


def _use_deterministic_algorithms(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms`` without importing ``torch._inductor`` to set its flag.

    PyTorch's function imports ``torch._inductor.config`` (2-6 s per process on 2 shared cores, paid by
    every fold process) only to tell ``torch.compile`` about the mode; nothing here is compiled, so the
    flag is set where inductor is already loaded and the global switch is set as PyTorch sets it.
    """
    inductor = sys.modules.get("torch._inductor.config")
    if inductor is not None:
        inductor.deterministic = mode  # type: ignore[attr-defined]
    torch._C._set_deterministic_algorithms(mode, warn_only=warn_only)


def validation_split(
    y: np.ndarray, groups: np.ndarray, fraction: float, rng: np.random.Generator
) -> np.ndarray:
    """Boolean mask of validation samples: whole subjects, stratified by class, from the given data.

    Returns an all-False mask when a class has fewer than 3 subjects (then no early stopping).
    """
    subjects, first = np.unique(groups, return_index=True)
    labels = y[first]
    val_subjects = []
    for cls in np.unique(labels):
        members = subjects[labels == cls]
        if len(members) < 3:
            return np.zeros(len(y), dtype=bool)
        n_val = max(1, round(fraction * len(members)))
        val_subjects.extend(rng.choice(members, n_val, replace=False).tolist())
    return np.isin(groups, val_subjects)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[list[int]]:
    order = torch.randperm(n, generator=generator).tolist()
    chunks = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if len(chunks) > 1 and len(chunks[-1]) == 1:  # BatchNorm cannot train on a batch of one
        chunks[-2].extend(chunks.pop())
    return chunks


def _augment(
    z: torch.Tensor,
    settings: TrainSettings,
    generator: torch.Generator,
) -> torch.Tensor:
    """Random shift (same for the batch) and Gaussian noise, applied to z-scored maps.

    Shifting after the voxelwise z-score matters: a shifted raw map minus the unshifted mean map
    would turn the brain edge into huge artificial z-values. Shifts and noise come from ``generator``
    (a CPU generator) and the noise moves to ``z``'s device, so that both devices draw the same.
    """
    if settings.shift_vox > 0:
        shifts = torch.randint(-settings.shift_vox, settings.shift_vox + 1, (3,), generator=generator)
        z = torch.roll(z, shifts=tuple(int(s) for s in shifts), dims=(1, 2, 3))
    if settings.noise > 0:  # drawn on the CPU on every device: a CUDA training sees the CPU's noise
        z = z + settings.noise * torch.randn(z.shape, generator=generator).to(z.device)
    return z


def _loss(
    model: StrokeCNN,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor | None,
    batch_size: int = 16,
) -> float:
    """Validation loss: class-weighted cross-entropy, or (``weights`` None) the Huber loss of regression.

    ``x``, ``y`` and ``weights`` are on the model's device.
    """
    model.eval()
    total = 0.0
    criterion = (
        nn.CrossEntropyLoss(weight=weights, reduction="sum")
        if weights is not None
        else nn.HuberLoss(reduction="sum")
    )
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i : i + batch_size], y[i : i + batch_size]
            total += float(criterion(_output(model, xb, weights is None), yb))
    if weights is None:
        return total / max(len(y), 1)
    return total / max(float(weights[y].sum()), 1e-12)


#: Training precisions: float32, or bfloat16 autocast of the forward pass (:attr:`TrainSettings.precision`).
PRECISIONS = ("float32", "bfloat16")


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The forward pass's precision context: bfloat16 autocast on ``device``, or nothing."""
    check_choice(precision, PRECISIONS, "training precision", "TrainSettings.precision")
    if precision == "float32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def _output(model: StrokeCNN, x: torch.Tensor, regression: bool, z_scored: bool = False) -> torch.Tensor:
    """Logits (classification) or the standardised score (regression, one value per sample)."""
    out = model.classify(x) if z_scored else model(x)
    return out[:, 0] if regression else out


def train_model(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    settings: TrainSettings = TrainSettings(),
    *,
    regression: bool = False,
) -> tuple[StrokeCNN, list[dict[str, float]]]:
    """Train a :class:`StrokeCNN` on samples ``x`` (n, X, Y, Z) with labels ``y`` (1 = severe).

    ``groups`` gives the subject of each sample; the early-stopping split takes whole subjects from
    these training data only, and the normaliser is fit on the remaining training samples. With
    ``regression=True``, ``y`` is the score (UL-FMA): the model has one output, the score is standardised
    with the mean and SD of the samples it is fit on (stored in the model), the loss is Huber's, and the
    early-stopping split is stratified by the score's median.

    Returns ``(model, curve)`` where ``curve`` is a list of ``{epoch, train_loss, val_loss}``.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32 if regression else np.int64)
    groups = np.asarray(groups)
    device = resolve_device(settings.device)
    with deterministic(settings.seed, device), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # every op that warns is recorded (re-emitted below)
        rng = np.random.default_rng(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        strata = (y > np.median(y)).astype(np.int64) if regression else y
        is_val = validation_split(strata, groups, settings.val_fraction, rng)
        x_fit, y_fit = x[~is_val], y[~is_val]
        x_val, y_val = x[is_val], y[is_val]
        model = model_for(x.shape[1:], settings, n_classes=1 if regression else 2)
        fit_normaliser(model, x_fit)
        weights: torch.Tensor | None = None
        criterion: nn.Module
        if regression:
            centre, scale = float(y_fit.mean()), float(y_fit.std()) or 1.0
            model.target_mean.fill_(centre)
            model.target_std.fill_(scale)
            y_fit = ((y_fit - centre) / scale).astype(np.float32)
            y_val = ((y_val - centre) / scale).astype(np.float32)
            criterion = nn.HuberLoss()
        else:
            counts = np.bincount(y_fit, minlength=2).astype(float)
            weights = torch.tensor(len(y_fit) / (2.0 * np.maximum(counts, 1.0)), dtype=torch.float32)
            weights = weights.to(device)
            criterion = nn.CrossEntropyLoss(weight=weights)
        model.to(device)
        # the data live on the device for the whole training; the batch order, the noise and the dropout
        # masks are drawn on the CPU (the same draws on either device)
        xf, yf = torch.from_numpy(x_fit).to(device), torch.from_numpy(y_fit).to(device)
        xv, yv = torch.from_numpy(x_val).to(device), torch.from_numpy(y_val).to(device)
        optimiser = torch.optim.AdamW(
            model.parameters(), lr=settings.learning_rate, weight_decay=settings.weight_decay
        )
        best, best_loss, stale, curve = None, math.inf, 0, []
        for epoch in range(1, settings.epochs + 1):
            model.train()
            total, seen = 0.0, 0
            for idx in _batches(len(y_fit), settings.batch_size, generator):
                rows = torch.tensor(idx, device=device)
                with torch.no_grad():
                    zb = model.normalise(xf[rows])
                zb = _augment(zb, settings, generator)
                yb = yf[rows]
                optimiser.zero_grad()
                with _autocast(device, settings.precision):
                    loss = criterion(_output(model, zb, regression, z_scored=True), yb)
                loss.backward()
                optimiser.step()
                total += float(loss.detach()) * len(idx)
                seen += len(idx)
            val_loss = _loss(model, xv, yv, weights) if len(y_val) else math.nan
            curve.append({"epoch": epoch, "train_loss": total / max(seen, 1), "val_loss": val_loss})
            monitored = val_loss if len(y_val) else curve[-1]["train_loss"]
            if monitored < best_loss - 1e-4:
                best, best_loss, stale = copy.deepcopy(model.state_dict()), monitored, 0
            else:
                stale += 1
                if len(y_val) and stale >= settings.patience and epoch >= settings.min_epochs:
                    break
        if best is not None:
            model.load_state_dict(best)
    for w in caught:  # shown as they would have been, once recorded
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    flagged = nondeterministic_ops(caught)
    model.training_device = {
        "device": device.type,
        "deterministic": determinism(device, flagged),
        "nondeterministic_ops": flagged,
    }
    model.eval()
    return model.cpu(), curve


def _forward(
    model: StrokeCNN, x: np.ndarray, read: Callable[[torch.Tensor], torch.Tensor], batch_size: int
) -> np.ndarray:
    """``read(model output)`` for each sample of ``x`` ((n, X, Y, Z) or one (X, Y, Z) map), in batches."""
    x = np.asarray(x, dtype=np.float32)
    x = x[None] if x.ndim == 3 else x
    model.eval()
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(x[i : i + batch_size])).to(device)
            out.append(read(model(batch)).cpu().numpy())
    return np.concatenate(out).astype(float)


def predict_proba(model: StrokeCNN, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Probability of the severe class for each sample of ``x`` ((n, X, Y, Z) or one (X, Y, Z) map)."""
    return _forward(model, x, lambda logits: torch.softmax(logits, dim=1)[:, 1], batch_size)


def predict_score(model: StrokeCNN, x: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Predicted score (UL-FMA points) of a regression model for each sample of ``x``."""
    if model.n_classes != 1:
        raise ValueError("predict_score needs a regression model (one output)")
    return _forward(model, x, lambda z: z[:, 0] * model.target_std + model.target_mean, batch_size)


def fit_predict(
    x_train: np.ndarray,
    y_train: np.ndarray,
    groups_train: np.ndarray,
    x_test: np.ndarray,
    settings: TrainSettings,
    *,
    regression: bool = False,
    explain: Callable[[StrokeCNN, np.ndarray], None] | None = None,
) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Train on one training fold, predict its test samples (severe probability, or the score); curve too.

    ``explain(model, x_test)``, when given, is called with the fold's model and its test samples only
    (held-out saliency, see :func:`workflows.cross_validation.run_fold`).
    """
    model, curve = train_model(x_train, y_train, groups_train, settings, regression=regression)
    if explain is not None:
        explain(model, x_test)
    return (predict_score if regression else predict_proba)(model, x_test), curve
