"""Planted-effect maps for positive and negative controls of the models (tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def blob_cohort(
    effect: float,
    n: int = 48,
    shape: Sequence[int] = (24, 28, 24),
    seed: int = 0,
    radius: float = 2.5,
    centre: Sequence[int] = (7, 16, 14),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """i.i.d. voxel noise; a random half (severe, y = 1) carries a ball at +``effect`` SD.

    The default ball (radius 2.5 voxels) has 81 voxels: a localised effect, which a model that only sees
    global shifts cannot find. ``effect=0`` is the null. Returns maps (n, *shape) float32, labels and one
    subject label per map.
    """
    gen = np.random.default_rng(seed)
    x = gen.normal(size=(n, *shape)).astype(np.float32)
    y = (np.arange(n) % 2).astype(int)
    gen.shuffle(y)
    ijk = np.indices(tuple(shape))
    blob = ((ijk - np.asarray(centre)[:, None, None, None]) ** 2).sum(0) <= radius**2
    x[y == 1] += effect * blob
    return x, y, np.arange(n).astype(str)
