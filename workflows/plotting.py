"""Report figures ("reportlets") as SVG files: one plain function per figure, matplotlib Agg only.

Participant figures (called by :mod:`workflows.interfaces.reportlets` during a run) and group figures
(called by the application's group report from the group outputs). Every function writes ``out_svg`` and
returns its path, so that interfaces and report builders only pass files around.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import nibabel as nb
import numpy as np

from workflows.denoise import CARPET_VOXELS, carpet_sample
from workflows.models import COLOURS, model_colours, model_label, ordered
from workflows.utils.images import as_image, read_data

if TYPE_CHECKING:
    import numpy.typing as npt
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure
    from matplotlib.transforms import Bbox

#: Colours used across figures (colour-blind friendly pairs); each model's is in the registry.
COLORS = {
    **COLOURS,
    "observed": "#0072B2",
    "train": "#0072B2",
    "val": "#D55E00",
    "seed": "#E69F00",
    "lesion": "#56B4E9",
    "censored": "#CC3311",
}
#: Line styles that tell models apart besides their colour (curves that overlap stay visible).
DASHES = ("-", "--", "-.", ":")
MAX_CARPET_VOXELS = CARPET_VOXELS


def _save(fig: Figure, out_svg: Path | str) -> str:
    """Write a figure as SVG, cropped to what it draws, and close it.

    Text stays text (``svg.fonttype: none``, with matplotlib's sans-serif family list ending in the generic
    ``sans-serif``): a reader can select and search it and a screen reader can read it, the files are
    smaller, and drawing a participant's figures takes a quarter less time than with every glyph written as
    a path (1.30 s against 1.70 s a subject, 4 mm). A browser without DejaVu Sans draws the labels in a
    narrower sans-serif font, so they still fit the box measured with DejaVu's metrics.

    The crop is the figure's tight box as its layout stands (:func:`tight_box`), given to ``savefig``:
    ``bbox_inches="tight"`` would draw the whole figure once more to find it (0.25 s of the six
    participant figures' 1.8 s of CPU).
    """
    out_svg = str(out_svg)
    os.makedirs(os.path.dirname(os.path.abspath(out_svg)), exist_ok=True)
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(out_svg, format="svg", bbox_inches=tight_box(fig))
    plt.close(fig)
    return out_svg


def tight_box(fig: Figure) -> Bbox:
    """The box (inches) around everything ``fig`` draws, padded by ``savefig.pad_inches``, without drawing.

    Measured with the figure's own (Agg) renderer on its current layout, as ``tight_layout`` measures;
    ``bbox_inches="tight"`` measures after a draw with the SVG renderer, whose text extents can differ by
    a point or two (the participant figures: under 1 pt).
    """
    box = fig.get_tightbbox(fig.canvas.get_renderer())  # type: ignore[attr-defined]
    return box.padded(matplotlib.rcParams["savefig.pad_inches"])


def _as_3d(img: nb.Nifti1Image | Path | str) -> nb.Nifti1Image:
    """A 3D image: the mean over time of a 4D image, unchanged otherwise."""
    img = as_image(img)
    if len(img.shape) == 4:
        data = np.asarray(img.dataobj, dtype=np.float32).mean(axis=3)
        return nb.Nifti1Image(data, img.affine)
    return img


def _centre_of_mass(img: nb.Nifti1Image) -> tuple[float, float, float] | None:
    """World coordinates (mm) of the centre of a mask's non-zero voxels, or None when empty."""
    ijk = np.argwhere(np.asarray(img.dataobj) > 0)
    if ijk.size == 0:
        return None
    x, y, z = (float(v) for v in nb.affines.apply_affine(img.affine, ijk.mean(axis=0)))
    return x, y, z


@functools.lru_cache(maxsize=1)
def _mni_template() -> nb.Nifti1Image:
    """nilearn's bundled MNI152 template at 2 mm (offline), loaded once per process.

    Every other voxel of its 1 mm grid: ``load_mni152_template(resolution=2)``'s 2 mm voxel centres fall
    on 1 mm ones, so its cubic-spline resampling (0.6 s, once in every worker that draws) returns these
    samples (to 3e-16; tests/test_reportlets.py).
    """
    from nilearn.datasets import load_mni152_template

    return load_mni152_template().slicer[::2, ::2, ::2]


# --------------------------------------------------------------------------- participant figures


def _binary(img: nb.Nifti1Image | Path | str) -> nb.Nifti1Image:
    """A 0/1 image of the non-zero voxels of a (3D or 4D-mean) image."""
    img = _as_3d(img)
    return nb.Nifti1Image(
        (np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32)) > 0).astype(np.uint8), img.affine
    )


def _outline(
    display: object, img: nb.Nifti1Image | None, colour: str, width: float = 1.5, **kwargs: object
) -> bool:
    """Draw the outline of a mask on every cut of a nilearn display; False when the mask is empty."""
    if img is None or not np.any(np.asarray(img.dataobj) > 0):
        return False
    display.add_contours(img, levels=[0.5], colors=[colour], linewidths=width, **kwargs)  # type: ignore[attr-defined]
    return True


def _opacity(func: object, value: float, fallback: bool = True) -> dict[str, float]:
    """Opacity keyword of a nilearn plotting call: ``transparency`` (nilearn >= 0.12), else ``alpha``
    (or nothing when ``fallback`` is False)."""
    import inspect

    if "transparency" in inspect.signature(func).parameters:  # type: ignore[arg-type]
        return {"transparency": value}
    return {"alpha": value} if fallback else {}


def plot_seed_overlay(
    seed_img: nb.Nifti1Image | Path | str,
    ref_img: nb.Nifti1Image | Path | str,
    out_svg: Path | str,
    lesion_mask_img: nb.Nifti1Image | Path | str | None = None,
    bg_img: nb.Nifti1Image | Path | str | None = None,
) -> str:
    """The seed (orange, filled and outlined) on anatomy in three orthogonal views through its centre.

    The underlay is ``bg_img``, by default nilearn's MNI152 template (the maps are on an MNI grid, and an
    fMRIPrep BOLD reference may carry no contrast); ``ref_img`` (the run's brain mask, or its BOLD
    reference) is outlined in grey to show the run's coverage; the lesion is outlined in blue.
    """
    from matplotlib.colors import ListedColormap
    from nilearn import plotting

    seed = _binary(seed_img)
    fig = plt.figure(figsize=(9, 3.2))
    display = plotting.plot_anat(
        _mni_template() if bg_img is None else bg_img,
        display_mode="ortho",
        figure=fig,
        cut_coords=_centre_of_mass(seed),
        black_bg=False,
        draw_cross=False,
        annotate=True,
        colorbar=False,
        dim=-0.3,
    )
    opacity = _opacity(type(display).add_overlay, 0.7)
    display.add_overlay(seed, cmap=ListedColormap([COLORS["seed"]]), threshold=0.5, **opacity)
    _outline(display, seed, COLORS["seed"], 1.2)
    title = "Seed (orange) on the MNI152 template"
    if _outline(display, _binary(ref_img), "0.45", 0.8, linestyles="dashed"):
        title += ", run's brain mask (grey)"
    if lesion_mask_img is not None and _outline(display, _binary(lesion_mask_img), COLORS["lesion"], 1.8):
        title += ", lesion (blue)"
    display.title(title, size=10, color="black", bgcolor="white")
    return _save(fig, out_svg)


def plot_confounds(
    fd_array: npt.ArrayLike,
    censored_bool_array: npt.ArrayLike,
    out_svg: Path | str,
    fd_thresh: float | None = 0.5,
    dummy: int = 0,
) -> str:
    """Framewise displacement over volumes, the FD threshold, dummy scans and censored volumes.

    ``fd_array`` and ``censored_bool_array`` cover the volumes *after* the ``dummy`` dummy scans, as the
    denoising step writes them (``volumes.tsv``); the x axis counts acquired volumes, so the dummy scans
    are the grey band before the series and are never counted again. ``fd_thresh`` is drawn only when
    it censored volumes (scrubbing); None draws no threshold.
    """
    fd = np.asarray(fd_array, dtype=float)
    censored = np.asarray(censored_bool_array, dtype=bool)[: fd.size]
    dummy = int(dummy)
    fig, ax = plt.subplots(figsize=(9, 2.4))
    x = np.arange(fd.size) + dummy
    if dummy:
        ax.axvspan(-0.5, dummy - 0.5, color="0.85", label=f"dummy scans ({dummy}, dropped)")
    for i in np.flatnonzero(censored):
        ax.axvline(int(i) + dummy, color=COLORS["censored"], alpha=0.35, lw=1)
    ax.plot(x, np.nan_to_num(fd), color="k", lw=1, label="FD")
    if fd_thresh is not None:
        ax.axhline(fd_thresh, color=COLORS["censored"], ls="--", lw=1, label=f"threshold {fd_thresh:g} mm")
    if censored.any():
        ax.plot([], [], color=COLORS["censored"], alpha=0.5, label=f"censored ({int(censored.sum())})")
    finite = fd[np.isfinite(fd)]
    ax.set(
        xlabel="volume (acquired, dummy scans included)",
        ylabel="FD (mm)",
        xlim=(-0.5, max(fd.size + dummy, 1) - 0.5),
        title=f"Framewise displacement: mean {finite.mean() if finite.size else float('nan'):.3f} mm, "
        f"{int(censored.sum())} of {fd.size} volumes censored"
        + (f" (after {dummy} dummy scans)" if dummy else ""),
    )
    ax.legend(loc="upper right", fontsize=7, ncol=4, frameon=False)
    return _save(fig, out_svg)


def _carpet_rows(data_tv: np.ndarray, rng_seed: int = 0) -> np.ndarray:
    """(V, T) z-scored rows, detrended by their mean, subsampled to at most MAX_CARPET_VOXELS rows."""
    data = np.asarray(data_tv, dtype=np.float32)
    if data.shape[1] > MAX_CARPET_VOXELS:
        data = data[:, carpet_sample(data.shape[1], MAX_CARPET_VOXELS, rng_seed)]
    data = data - data.mean(axis=0)
    sd = data.std(axis=0)
    sd[sd == 0] = 1
    return (data / sd).T


def plot_carpet(
    bold: nb.Nifti1Image | Path | str | np.ndarray,
    denoised_TxV_array: npt.ArrayLike,
    mask_img: nb.Nifti1Image,
    out_svg: Path | str,
    tr: float,
) -> str:
    """Carpet plots (voxels x time, z-scored) of the BOLD inside the mask before and after denoising.

    ``bold`` is the 4D BOLD, or the (T, n) series of its mask voxels at :func:`workflows.denoise.
    carpet_sample` (what the denoising step keeps, so that the report does not read the run again);
    ``denoised_TxV_array`` all (T, V) denoised mask voxels, or the same sample of them (the same rows).
    """
    mask = np.asarray(mask_img.dataobj) > 0
    n_voxels = int(mask.sum())
    if isinstance(bold, np.ndarray):
        before = bold
    else:
        img = as_image(bold)
        before = read_data(img, img.get_filename(), "BOLD")[mask].T  # (T, V)
    after = np.asarray(denoised_TxV_array, dtype=np.float32)
    fig, axes = plt.subplots(2, 1, figsize=(9, 4.6), sharex=False)
    for ax, data, name in (
        (axes[0], before, "before denoising (fMRIPrep BOLD)"),
        (axes[1], after, "after denoising"),
    ):
        rows = _carpet_rows(data)
        ax.imshow(
            rows,
            aspect="auto",
            cmap="gray",
            vmin=-2,
            vmax=2,
            interpolation="nearest",
            extent=(0, rows.shape[1] * tr, rows.shape[0], 0),
            rasterized=True,
        )
        ax.set(
            ylabel="voxels",
            yticks=[],
            title=f"Carpet {name}: {n_voxels} voxels x {data.shape[0]} volumes, z-scored, range +/-2",
        )
    axes[0].set_xlabel("time (s), dummy scans included")
    axes[1].set_xlabel("time (s), after the dummy scans")
    fig.tight_layout()
    return _save(fig, out_svg)


def plot_seed_timeseries(
    seed_array: npt.ArrayLike,
    tr: float,
    windows_table: pd.DataFrame,
    traces: Mapping[str, npt.ArrayLike],
    out_svg: Path | str,
) -> str:
    """The seed series and the windowed Fisher-z correlation of the seed with a few regions."""
    seed = np.asarray(seed_array, dtype=float)
    fig, axes = plt.subplots(2, 1, figsize=(9, 4.4))
    axes[0].plot(np.arange(seed.size) * tr, seed, color=COLORS["seed"], lw=1)
    axes[0].set(
        xlabel="time (s)",
        ylabel="signal (z)",
        title="Seed time series (ipsilesional M1)",
        xlim=(0, max(seed.size - 1, 1) * tr),
    )
    ax = axes[1]
    table = windows_table
    start = (
        np.asarray(table["start_volume"], dtype=float)
        if "start_volume" in table
        else np.arange(len(table), dtype=float)
    )
    end = np.asarray(table["end_volume"], dtype=float) if "end_volume" in table else start
    centre = (start + end) / 2 * tr
    kept = np.asarray(table["kept"], dtype=bool) if "kept" in table else np.ones(len(table), bool)
    for name, values in traces.items():
        values = np.where(kept, np.asarray(values, dtype=float), np.nan)
        ax.plot(centre, values, lw=1.2, label=name)
    for c in centre[~kept]:
        ax.axvline(c, color="0.85", lw=2, zorder=0)
    ax.axhline(0, color="k", lw=0.5)
    ax.set(
        xlabel="window centre (s)",
        ylabel="Fisher z",
        title=f"Windowed seed correlation: {int(kept.sum())} windows kept"
        + (f", {int((~kept).sum())} dropped (grey)" if (~kept).any() else ""),
    )
    if traces:
        ax.legend(fontsize=7, frameon=False, loc="upper right", ncol=len(traces))
    fig.tight_layout()
    return _save(fig, out_svg)


def with_landmark_slices(cuts: Sequence[float], masks: Sequence[nb.Nifti1Image]) -> list[float]:
    """Axial cuts (mm) where the cut nearest each mask's centre moves onto that centre, so that the seed
    and the lesion outlines are on a slice; the number of cuts stays the same."""
    out = [float(c) for c in cuts]
    fixed: set[int] = set()
    for mask in masks:
        centre = _centre_of_mass(mask)
        if centre is None or not out:
            continue
        free = [i for i in range(len(out)) if i not in fixed] or list(range(len(out)))
        nearest = min(free, key=lambda i: abs(out[i] - centre[2]))
        out[nearest] = round(centre[2], 1)
        fixed.add(nearest)
    return sorted(out)


@dataclass(frozen=True)
class AxialCanvas:
    """Axial slices side by side on one 2D canvas (rows: posterior to anterior; columns: left to right).

    ``background`` and each of ``layers`` are (rows, columns) arrays on the background's in-plane grid;
    ``columns`` holds each cut's [start, stop) canvas columns; the columns between cuts are 0.
    """

    background: np.ndarray
    layers: tuple[np.ndarray, ...]
    columns: tuple[tuple[int, int], ...]
    cuts: tuple[float, ...]
    background_range: tuple[float, float]


def axial_canvas(
    bg_img: nb.Nifti1Image,
    images: Sequence[nb.Nifti1Image],
    cuts: Sequence[float],
    gap: int = 2,
) -> AxialCanvas:
    """Sample a background and ``images`` at axial cuts (world z, mm) onto one canvas.

    Each cut is the background's nearest axial plane; the images are sampled there at the background's
    voxel centres (nearest neighbour: a 4 mm map keeps its voxels; outside an image reads 0). Each cut is
    cropped to the columns where the background or an image has content (one voxel kept around it), all
    cuts to the rows where any has, and ``gap`` empty columns part them. Left is drawn on the left and
    anterior up, as nilearn's axial views (neurological convention).
    """
    from nilearn.image import reorder_img
    from scipy.ndimage import map_coordinates

    bg = reorder_img(_as_3d(bg_img), resample="nearest")  # diagonal affine: i left to right, j back to front
    bg_data = np.nan_to_num(np.asarray(bg.dataobj, dtype=np.float32))
    nx, ny, nz = bg_data.shape[:3]
    planes = [
        int(np.clip(np.rint(nb.affines.apply_affine(np.linalg.inv(bg.affine), [0.0, 0.0, c])[2]), 0, nz - 1))
        for c in cuts
    ]
    ijk = np.stack(
        np.meshgrid(np.arange(nx), np.arange(ny), planes, indexing="ij"), axis=-1
    )  # (nx, ny, n, 3)
    layers = []
    for img in images:
        data = np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32))
        to_img = np.linalg.inv(img.affine) @ bg.affine
        coords = nb.affines.apply_affine(to_img, ijk.reshape(-1, 3)).T
        layers.append(
            map_coordinates(data, coords, order=0, mode="constant", cval=0.0).reshape(ijk.shape[:3])
        )
    stack = bg_data[:, :, planes]
    # content: the template's brain (not its denormal halo) or an image's non-zero voxels; (nx, ny, n)
    content = (stack > 1e-6 * stack.max(initial=0.0)) | np.any([layer != 0 for layer in layers], axis=0)
    rows = np.flatnonzero(content.any(axis=(0, 2)))
    j0, j1 = (max(rows[0] - 1, 0), min(rows[-1] + 2, ny)) if rows.size else (0, ny)
    spans = []
    for s in range(len(planes)):
        cols = np.flatnonzero(content[:, :, s].any(axis=1))
        spans.append((max(cols[0] - 1, 0), min(cols[-1] + 2, nx)) if cols.size else (0, nx))
    width = sum(i1 - i0 for i0, i1 in spans) + gap * max(len(spans) - 1, 0)
    columns = []
    start = 0
    for i0, i1 in spans:
        columns.append((start, start + i1 - i0))
        start += i1 - i0 + gap

    def place(volume: np.ndarray) -> np.ndarray:
        canvas = np.zeros((j1 - j0, width), np.float32)
        for s, ((i0, i1), (c0, c1)) in enumerate(zip(spans, columns)):
            canvas[:, c0:c1] = volume[i0:i1, j0:j1, s].T
        return canvas

    return AxialCanvas(
        place(stack),
        tuple(place(layer) for layer in layers),
        tuple(columns),
        tuple(float(c) for c in cuts),
        (float(bg_data.min()), float(bg_data.max())),
    )


#: Opacity of a sequential map over the template; the values of a diverging map within this share of its
#: scale about 0 are left clear.
SEQUENTIAL_OPACITY = 0.85
DIVERGING_CLEAR = 0.05


def map_scale(data: np.ndarray, vmax: float | None, unit: str | None) -> tuple[float, bool, str]:
    """The colour scale of a map's (finite) values: its top, whether it is sequential, and its label.

    The top is ``vmax``, else the 99th percentile of the map's non-zero |values|, and 1 for an empty map;
    a map that is never negative is sequential ("0 to top"), any other diverging ("-top to top").
    """
    top = float(vmax or np.percentile(np.abs(data[data != 0]), 99) if data.any() else 1.0)
    top = top if top > 0 else 1.0
    positive = bool(data.min() >= 0) if data.size else True
    suffix = f", {unit}" if unit else ""
    return top, positive, (f"0 to {top:g}" if positive else f"-{top:g} to {top:g}") + suffix


def map_rgba(values: np.ndarray, top: float, positive: bool) -> tuple[np.ndarray, Colormap, Normalize]:
    """RGBA colours of map values (any shape) and the colour map and norm of their colourbar.

    ``positive``: sequential ``inferno`` from 0 to ``top``, opacity :data:`SEQUENTIAL_OPACITY`, values
    under 1e-6 clear; else diverging ``RdBu_r`` from -``top`` to ``top``, opaque, values within
    :data:`DIVERGING_CLEAR` of the scale about 0 clear (alpha 0: the template shows through). The
    colourbar's colour map greys the clear band, as nilearn's does.
    """
    from matplotlib.colors import ListedColormap, Normalize

    cmap = plt.get_cmap("inferno" if positive else "RdBu_r")
    norm = Normalize(0.0 if positive else -top, top, clip=True)
    threshold, opacity = (1e-6, SEQUENTIAL_OPACITY) if positive else (DIVERGING_CLEAR * top, 1.0)
    rgba = cmap(norm(values))
    rgba[..., 3] = np.where(np.abs(values) <= threshold, 0.0, opacity)
    if not positive:
        levels = np.linspace(-top, top, cmap.N)
        colours = cmap(np.linspace(0.0, 1.0, cmap.N))
        colours[np.abs(levels) < threshold] = (0.5, 0.5, 0.5, 1.0)
        cmap = ListedColormap(colours)
    return rgba, cmap, norm


def _colourbar(
    ax: Axes, cmap: Colormap, limits: tuple[float, float], box: tuple[float, float, float, float]
) -> None:
    """A colourbar drawn in ``ax`` itself at ``box`` (x, y, width, height in data units): a gradient
    image, a white frame and five white tick labels (a colourbar axes of its own costs ~15 ms)."""
    from matplotlib.patches import Rectangle

    x, y, w, h = box
    ax.imshow(
        np.linspace(0.0, 1.0, 256)[:, None],
        cmap=cmap,
        origin="lower",
        extent=(x, x + w, y, y + h),
        interpolation="nearest",
        aspect="auto",
    )
    ax.add_patch(Rectangle((x, y), w, h, fill=False, edgecolor="w", linewidth=0.6))
    low, high = limits
    for value in np.linspace(low, high, 5):
        level = y + h * (value - low) / (high - low)
        ax.text(x + w * 1.6, level, f"{value:.3g}", color="w", size=7, ha="left", va="center")


def _annotate_row(ax: Axes, canvas: AxialCanvas) -> None:
    """Each cut's z (mm) at its lower left and the L/R letters on the first cut, as nilearn annotates."""
    for (c0, _), cut in zip(canvas.columns, canvas.cuts):
        ax.text(c0 + 0.5, 0.5, f"z={int(cut)}", color="w", size=9, ha="left", va="bottom")
    if canvas.columns:
        c0, c1 = canvas.columns[0]
        top = canvas.background.shape[0] - 0.5
        ax.text(c0 + 0.5, top, "L", color="w", size=9, ha="left", va="top")
        ax.text(c1 - 0.5, top, "R", color="w", size=9, ha="right", va="top")


def _outline_lines(mask: np.ndarray) -> list[np.ndarray]:
    """The 0.5 iso-lines of a canvas mask, in canvas units (pixel centres at +0.5)."""
    from contourpy import contour_generator

    rows, cols = mask.shape
    lines = contour_generator(np.arange(cols) + 0.5, np.arange(rows) + 0.5, mask.astype(np.float64)).lines(
        0.5
    )
    return list(lines)  # type: ignore[arg-type]


def plot_map_mosaics(
    maps: Mapping[str, nb.Nifti1Image | Path | str],
    out_svg: Path | str,
    vmax: Mapping[str, float | None],
    cut_coords: int | Sequence[float] = 7,
    bg_img: nb.Nifti1Image | Path | str | None = None,
    seed_img: nb.Nifti1Image | Path | str | None = None,
    lesion_mask_img: nb.Nifti1Image | Path | str | None = None,
    units: Mapping[str, str] | None = None,
) -> str:
    """One axial mosaic per map (title -> image), on a fixed colour scale per map (``vmax`` by title).

    Maps that are never negative (e.g. dFC SD, saliency) use a sequential scale from 0; the others a
    diverging scale symmetric about 0, with the values within 5% of 0 left clear so that the template
    shows through (:func:`map_rgba`). The scale (and its unit, ``units`` by title) is written in each
    row's title. The seed (orange) and the lesion (blue) are outlined on every slice when given, as
    landmarks.

    Each row is one axes holding one image: the cuts side by side (:func:`axial_canvas`, the same slices
    in every row), the map composited over the template dimmed as nilearn's ``plot_stat_map`` dims it on
    black, and its colourbar; plus one line collection per outline and the labels. nilearn's mosaic drew
    eight axes and two images per slice row (1.2 s of a run's figures).
    """
    from matplotlib.collections import LineCollection
    from nilearn.plotting import find_cut_slices

    outlines = [
        (_binary(img), colour)
        for img, colour in ((seed_img, COLORS["seed"]), (lesion_mask_img, COLORS["lesion"]))
        if img is not None
    ]
    images = {}
    for title, img in maps.items():
        img = _as_3d(img)
        images[title] = nb.Nifti1Image(np.nan_to_num(np.asarray(img.dataobj, dtype=np.float32)), img.affine)
    if isinstance(cut_coords, int) and images:
        # the same slices in every row, so that rows compare
        first = next(iter(images.values()))
        nonzero = nb.Nifti1Image(np.abs(first.get_fdata(dtype=np.float32)), first.affine)
        cuts = find_cut_slices(nonzero, direction="z", n_cuts=cut_coords)
        cut_coords = with_landmark_slices(cuts, [img for img, _ in outlines])
    canvas = axial_canvas(
        _mni_template() if bg_img is None else as_image(bg_img),
        [*images.values(), *(img for img, _ in outlines)],
        [] if isinstance(cut_coords, int) else [float(c) for c in cut_coords],
    )
    # the template dimmed as nilearn dims a background on black (dim 0.8: its brightest is 71% grey)
    low, high = canvas.background_range
    grey = np.clip((canvas.background - low) / (max(high - low, 1e-12) * 1.4), 0.0, 1.0)[..., None]
    height, width = canvas.background.shape
    band = int(np.ceil(width * 0.09))  # black columns right of the cuts, for the colourbar
    lines = [
        (_outline_lines(mask), colour) for mask, (_, colour) in zip(canvas.layers[len(images) :], outlines)
    ]
    fig, axes = plt.subplots(len(maps), 1, figsize=(10, 1.9 * len(maps)), squeeze=False)
    for ax, (title, img), values in zip(axes[:, 0], images.items(), canvas.layers):
        top, positive, scale = map_scale(np.asarray(img.dataobj), vmax.get(title), (units or {}).get(title))
        rgba, cmap, _ = map_rgba(values, top, positive)
        alpha = rgba[..., 3:]
        rgb = np.zeros((height, width + band, 3))
        rgb[:, :width] = rgba[..., :3] * alpha + grey * (1 - alpha)
        ax.imshow(rgb, origin="lower", extent=(0, width + band, 0, height), interpolation="nearest")
        limits = (0.0 if positive else -top, top)
        _colourbar(ax, cmap, limits, (width + 0.12 * band, 0.08 * height, 0.14 * band, 0.84 * height))
        for segments, colour in lines:
            ax.add_collection(LineCollection(segments, colors=colour, linewidths=1.0))
        _annotate_row(ax, canvas)
        ax.text(0, 1.02, f"{title} (scale {scale})", transform=ax.transAxes, size=11, va="bottom")
        ax.set(xlim=(0, width + band), ylim=(0, height))
        ax.set_axis_off()
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.02, top=0.94, hspace=0.25)
    return _save(fig, out_svg)


# --------------------------------------------------------------------------- group figures


def _model_styles(models: Sequence[str]) -> dict[str, dict]:
    """Colour (one per model, :func:`workflows.models.model_colours`) and dash of each model's lines."""
    colours = model_colours(models)
    return {m: {"color": colours[m], "ls": DASHES[i % len(DASHES)]} for i, m in enumerate(models)}


def roc_models(predictions: pd.DataFrame) -> list[str]:
    """The models :func:`plot_roc` draws (registry order): those with both classes in some repeat."""
    drawn = [
        str(model)
        for model, rows in predictions.groupby("model", sort=False)
        if any(rep["y_true"].nunique() == 2 for _, rep in rows.groupby("repeat"))
    ]
    return ordered(drawn)


def plot_roc(predictions: pd.DataFrame, out_svg: Path | str) -> str:
    """ROC curves of each model, one thin line per CV repeat (out-of-fold predictions pooled).

    Each model has its own colour and dash, and the axes are padded, so that curves lying on the axes
    (AUC = 1) or on each other stay visible. Legend entries are the models' table labels.
    """
    from sklearn.metrics import roc_auc_score, roc_curve

    models = roc_models(predictions)
    styles = _model_styles(models)
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    ax.plot([0, 1], [0, 1], color="0.6", ls=(0, (1, 3)), lw=1, label="chance")
    for model in models:
        rows = predictions[predictions["model"] == model]
        curves = []
        for _, rep in rows.groupby("repeat"):
            y, p = rep["y_true"].to_numpy(int), rep["prob_severe"].to_numpy(float)
            if len(np.unique(y)) == 2:
                curves.append((*roc_curve(y, p)[:2], roc_auc_score(y, p)))
        for i, (fpr, tpr, _) in enumerate(curves):
            label = (
                None
                if i
                else (
                    f"{model_label(model)} (AUC {np.mean([c[2] for c in curves]):.2f}"
                    + (f", mean of {len(curves)} repeats)" if len(curves) > 1 else ")")
                )
            )
            ax.plot(fpr, tpr, alpha=0.8, lw=1.6, label=label, **styles[model])
    ax.set(
        xlabel="1 - specificity",
        ylabel="sensitivity",
        xlim=(-0.03, 1.01),
        ylim=(-0.01, 1.03),
        title="ROC, out-of-fold predictions",
        aspect="equal",
    )
    ax.legend(fontsize=7, loc="lower right", frameon=True, framealpha=0.9)
    return _save(fig, out_svg)


def subject_probabilities(predictions: pd.DataFrame) -> pd.DataFrame:
    """Per model and subject: true class and probability of 'severe' averaged over repeats (soft vote)."""
    return (
        predictions.groupby(["model", "participant_id"], sort=True)
        .agg(y_true=("y_true", "first"), prob_severe=("prob_severe", "mean"))
        .reset_index()
    )


def plot_confusion(
    predictions: pd.DataFrame, out_svg: Path | str, threshold: float = 0.5, columns: int = 3
) -> str:
    """Subject-level confusion matrix per model (probabilities averaged over repeats, cut at 0.5).

    One square panel per model, at most ``columns`` per row, so that the figure stays legible at the
    report's full width whatever the number of models.
    """
    per_subject = subject_probabilities(predictions)
    models = ordered(str(m) for m in per_subject["model"].unique())
    n_cols = max(1, min(columns, len(models)))
    n_rows = max(1, -(-len(models) // n_cols))
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.4 * n_cols, 3.1 * n_rows + 0.4), squeeze=False)
    names = ["mild-to-\nmoderate", "severe"]
    for ax, model in zip(axes.ravel(), models):
        rows = per_subject[per_subject["model"] == model]
        y = rows["y_true"].to_numpy(int)
        pred = (rows["prob_severe"].to_numpy(float) >= threshold).astype(int)
        cm = np.array([[np.sum((y == t) & (pred == p)) for p in (0, 1)] for t in (0, 1)])
        ax.imshow(cm, cmap="Blues", vmin=0, vmax=max(cm.max(), 1))
        for t in (0, 1):
            for p in (0, 1):
                ax.text(
                    p,
                    t,
                    str(cm[t, p]),
                    ha="center",
                    va="center",
                    fontsize=14,
                    color="white" if cm[t, p] > cm.max() / 2 else "black",
                )
        ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=names, yticklabels=names)
        ax.set_xlabel("predicted", fontsize=9)
        ax.set_ylabel("true", fontsize=9)
        ax.set_title(model_label(model), fontsize=9)
        ax.tick_params(labelsize=8)
    for ax in axes.ravel()[len(models) :]:
        ax.axis("off")
    fig.suptitle(f"Subjects, probability of severe averaged over repeats, cut at {threshold:g}", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_svg)


def plot_permutation(
    null_scores: npt.ArrayLike,
    observed: float | None,
    p_value: float | None,
    out_svg: Path | str,
    metric: str = "balanced_accuracy",
) -> str:
    """Histogram of the score (balanced accuracy, or MAE for a regression) under permuted labels, with
    the observed score marked (and chance, 0.5, for the balanced accuracy)."""
    null = np.asarray(null_scores, dtype=float)
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.hist(
        null,
        bins=min(20, max(5, null.size // 3)),
        color="0.6",
        edgecolor="white",
        label=f"permuted labels (n={null.size})",
    )
    if observed is not None:
        ax.axvline(observed, color=COLORS["observed"], lw=2, label=f"observed {observed:.3f}")
    if metric == "balanced_accuracy":
        ax.axvline(0.5, color="k", ls=":", lw=1, label="chance")
    ax.set(
        xlabel="balanced accuracy" if metric == "balanced_accuracy" else f"{metric.upper()} (UL-FMA points)",
        ylabel="count",
        title=f"Permutation test: p = {p_value:.3g}" if p_value is not None else "Permutation test",
    )
    ax.legend(fontsize=7, frameon=False)
    return _save(fig, out_svg)


def plot_loss_curves(curves: pd.DataFrame, out_svg: Path | str) -> str:
    """Training and validation loss per epoch: one faint line per fold, the mean over folds in bold."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for column, label in (("train_loss", "training"), ("val_loss", "validation")):
        if column not in curves:
            continue
        colour = COLORS["train" if column == "train_loss" else "val"]
        for _, fold in curves.groupby(["repeat", "fold"]):
            ax.plot(fold["epoch"], fold[column], color=colour, alpha=0.15, lw=0.8)
        mean = curves.groupby("epoch")[column].mean()
        ax.plot(mean.index, mean.to_numpy(), color=colour, lw=2, label=f"{label} (mean over folds)")
    n = curves.groupby(["repeat", "fold"]).ngroups
    ax.set(xlabel="epoch", ylabel="loss", title=f"Loss curves ({n} training runs)")
    ax.legend(fontsize=7, frameon=False)
    return _save(fig, out_svg)


def calibration_points(
    prob: npt.ArrayLike, y_true: npt.ArrayLike, n_bins: int = 5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reliability curve: per equal-width probability bin, mean probability, observed rate and count."""
    p, y = np.asarray(prob, dtype=float), np.asarray(y_true, dtype=float)
    edges = np.linspace(0, 1, n_bins + 1)
    idx = np.clip(np.digitize(p, edges[1:-1]), 0, n_bins - 1)
    used = [b for b in range(n_bins) if np.any(idx == b)]
    return (
        np.array([p[idx == b].mean() for b in used]),
        np.array([y[idx == b].mean() for b in used]),
        np.array([int(np.sum(idx == b)) for b in used]),
    )


def plot_calibration(predictions: pd.DataFrame, out_svg: Path | str, n_bins: int = 5) -> str:
    """Reliability diagram per model: one line per CV repeat, from that repeat's out-of-fold probabilities.

    Probabilities are not averaged over repeats first (a subject's mean over repeats is smoother, hence
    looks better calibrated, than any one model's output).
    """
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    ax.plot([0, 1], [0, 1], color="0.6", ls=(0, (1, 3)), lw=1, label="perfect calibration")
    models = ordered(str(m) for m in predictions["model"].unique())
    styles = _model_styles(models)
    for model in models:
        repeats = list(predictions[predictions["model"] == model].groupby("repeat", sort=True))
        for i, (_, rep) in enumerate(repeats):
            xs, ys, _ = calibration_points(rep["prob_severe"], rep["y_true"], n_bins)
            label = (
                None if i else model_label(model) + (f" ({len(repeats)} repeats)" if len(repeats) > 1 else "")
            )
            ax.plot(xs, ys, marker="o", ms=3, lw=1.4, alpha=0.8, label=label, **styles[model])
    ax.set(
        xlabel="mean predicted probability (severe)",
        ylabel="observed fraction severe",
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
        aspect="equal",
        title=f"Calibration ({n_bins} bins, per repeat)",
    )
    ax.legend(fontsize=7, frameon=True, framealpha=0.9, loc="upper left")
    return _save(fig, out_svg)


def plot_regression_scatter(
    predictions: pd.DataFrame,
    out_svg: Path | str,
    threshold: float,
    labels: Mapping[str, str] | None = None,
    order: Sequence[str] = (),
) -> str:
    """Predicted against true UL-FMA, one panel per model (each subject's prediction averaged over repeats).

    The identity line is dashed; the dotted lines are the severe threshold on both axes, so the lower-left
    and upper-right quadrants are the subjects whose thresholded prediction has the right class.
    """
    per_subject = (
        predictions.groupby(["model", "participant_id"], sort=True)
        .agg(y_true=("y_true", "first"), predicted=("predicted_score", "mean"))
        .reset_index()
    )
    models = [m for m in order if m in set(per_subject["model"])]
    models += sorted(set(per_subject["model"]) - set(models))
    n_cols = min(3, max(1, len(models)))
    n_rows = -(-len(models) // n_cols)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(3.0 * n_cols, 3.3 * n_rows), squeeze=False)
    colours = model_colours(models)
    values = np.concatenate([per_subject["y_true"].to_numpy(float), per_subject["predicted"].to_numpy(float)])
    low, high = float(np.nanmin(values)) - 3, float(np.nanmax(values)) + 3
    for ax, model in zip(axes.ravel(), models):
        rows = per_subject[per_subject["model"] == model]
        y, p = rows["y_true"].to_numpy(float), rows["predicted"].to_numpy(float)
        ax.plot([low, high], [low, high], color="0.5", ls="--", lw=1)
        ax.axvline(threshold, color="0.7", ls=":", lw=1)
        ax.axhline(threshold, color="0.7", ls=":", lw=1)
        ax.scatter(y, p, s=14, color=colours[model], alpha=0.8, edgecolor="none")
        text = f"MAE {np.mean(np.abs(y - p)):.1f}"
        if len(y) > 2 and np.ptp(p) > 0:
            text += f", r {np.corrcoef(y, p)[0, 1]:.2f}"
        label = (labels or {}).get(model) or model_label(model, "regression")
        ax.set_title(f"{label}\n{text}", fontsize=8)
        ax.set(xlim=(low, high), ylim=(low, high), aspect="equal")
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(models) :]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("true UL-FMA", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("predicted UL-FMA (out of fold)", fontsize=8)
    fig.tight_layout()
    return _save(fig, out_svg)


def plot_decision_curves(curves: pd.DataFrame, out_svg: Path | str, primary: str | None = None) -> str:
    """Net benefit by threshold probability of every model (decision_curves.tsv), with treat-all and
    treat-none; the primary model's range over CV repeats is shaded. The y axis stops a little below 0
    (treat-all falls steeply at high thresholds) and above the prevalence (the most any model can gain).
    """
    models = ordered(str(m) for m in curves["model"].unique())
    styles = _model_styles(models)
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    first = curves[curves["model"] == models[0]].sort_values("threshold")
    t = first["threshold"].to_numpy(float)
    ax.plot(t, first["treat_all"].to_numpy(float), color="0.45", lw=1.4, label="treat all")
    ax.plot(t, np.zeros_like(t), color="k", lw=1.0, ls=(0, (1, 2)), label="treat none")
    for model in models:
        rows = curves[curves["model"] == model].sort_values("threshold")
        style = dict(styles[model])
        lw = 2.2 if model == primary else 1.3
        ax.plot(rows["threshold"], rows["net_benefit"], lw=lw, label=model_label(model), **style)
        if model == primary:
            ax.fill_between(
                rows["threshold"].to_numpy(float),
                rows["net_benefit_min"].to_numpy(float),
                rows["net_benefit_max"].to_numpy(float),
                color=style["color"],
                alpha=0.15,
                lw=0,
            )
    odds = t[0] / (1 - t[0])
    prevalence = (float(first["treat_all"].iloc[0]) + odds) / (1 + odds)  # treat_all = prev - (1-prev) odds
    top = max(prevalence, float(curves["net_benefit"].max())) * 1.15 + 0.01
    ax.set(
        xlabel="threshold probability (risk of severe at which one would act)",
        ylabel="net benefit",
        xlim=(float(t.min()), float(t.max())),
        ylim=(-max(0.05, 0.25 * top), top),
        title="Decision curves, out-of-fold probabilities (mean over repeats)",
    )
    ax.legend(fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(fig, out_svg)


def plot_learning_curve(curves: pd.DataFrame, out_svg: Path | str, metric: str = "balanced_accuracy") -> str:
    """The primary model's score by number of training subjects (learning_curves.tsv): one faint line per
    fold, the mean over folds x repeats with +- 1 SD."""
    from workflows.models import PRIMARY_MODEL

    colour = model_colours([PRIMARY_MODEL])[PRIMARY_MODEL]
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for _, fold in curves.groupby(["repeat", "fold"]):
        fold = fold.sort_values("fraction")
        ax.plot(fold["n_train_subjects"], fold[metric], color=colour, alpha=0.15, lw=0.8)
    mean = curves.groupby("fraction").agg(
        n=("n_train_subjects", "mean"), mean=(metric, "mean"), sd=(metric, "std")
    )
    sd = mean["sd"].fillna(0.0).to_numpy(float)
    ax.fill_between(mean["n"], mean["mean"] - sd, mean["mean"] + sd, color=colour, alpha=0.2, lw=0)
    ax.plot(mean["n"], mean["mean"], color=colour, lw=2, marker="o", ms=4, label="mean +- SD over folds")
    if metric == "balanced_accuracy":
        ax.axhline(0.5, color="k", ls=":", lw=1, label="chance")
    n_folds = curves.groupby(["repeat", "fold"]).ngroups
    ax.set(
        xlabel="training subjects (share of each fold's training subjects)",
        ylabel="balanced accuracy" if metric == "balanced_accuracy" else "MAE (UL-FMA points)",
        title=f"Learning curve of {model_label(PRIMARY_MODEL)} ({n_folds} folds)",
    )
    ax.set_xticks(mean["n"].to_numpy(float))
    ax.set_xticklabels([f"{n:.0f}\n({f:g})" for f, n in zip(mean.index, mean["n"])], fontsize=7)
    ax.legend(fontsize=7, frameon=False)
    return _save(fig, out_svg)


def plot_sample_size(record: Mapping, out_svg: Path | str) -> str:
    """Riley et al.'s minimum sample size by anticipated C statistic (cv_summary.json ``sample_size``),
    on a log scale, with the cohort's own size and, when defined, the n at its observed C marked."""
    curve = record["curve"]
    c = np.array([p["c_statistic"] for p in curve], dtype=float)
    n = np.array([p["n"] for p in curve], dtype=float)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(c, n, color=COLORS["observed"], lw=2, marker="o", ms=4, label="minimum n (Riley et al. 2020)")
    ax.axhline(
        record["n_cohort"], color=COLORS["val"], ls="--", lw=1.4, label=f"this cohort: {record['n_cohort']}"
    )
    observed, at = record.get("observed_c"), record.get("at_observed_c")
    if observed is not None and at:
        ax.plot([observed], [at["n"]], marker="D", ms=7, color="k", ls="none", label="_nolegend_")
        ax.axvline(observed, color="0.5", ls=":", lw=1)
        ax.annotate(
            f"observed C {observed:.2f}: n >= {at['n']}",
            (observed, at["n"]),
            xytext=(6, 6),
            textcoords="offset points",
            fontsize=7,
        )
    ax.set_yscale("log")
    ax.set(
        xlabel="anticipated C statistic (AUC)",
        ylabel="patients needed",
        title=f"{record['n_parameters']} candidate parameters, {100 * record['prevalence']:.0f}% severe",
    )
    ax.legend(fontsize=7, frameon=False)
    return _save(fig, out_svg)
