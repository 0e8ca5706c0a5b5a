"""Sidecar content: one flat, documented dictionary of every parameter behind a derivative."""

from __future__ import annotations


def software_versions() -> dict[str, str]:
    """Versions of strokefc and the libraries that shape its numbers."""
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in (
        "strokefc",
        "nipype",
        "nilearn",
        "nibabel",
        "numpy",
        "scipy",
        "pybids",
        "niworkflows",
        "torch",
        "scikit-learn",
    ):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def merge_run_metadata(
    denoise_info: dict,
    seed_info: dict,
    dfc_info: dict,
    static: dict,
    lesion_info: dict | None = None,
    lag_info: dict | None = None,
) -> dict:
    """Combine the records of denoising, seed, dFC (and lesion) into one sidecar dictionary.

    Warnings from every step are gathered under ``Warnings``; the seed record goes under ``Seed``,
    the denoising record under ``Denoising`` and the lesion record under ``Lesion`` so that names
    cannot collide.
    """
    warnings = []
    for info in (lesion_info or {}, denoise_info, seed_info, dfc_info, lag_info or {}):
        warnings.extend(info.get("Warnings", info.get("warnings", [])))
    denoise = {k: v for k, v in denoise_info.items() if k != "Warnings"}
    seed = {k: v for k, v in seed_info.items() if k not in ("warnings", "Warnings")}
    dfc = {k: v for k, v in dfc_info.items() if k != "Warnings"}
    meta = {**static, **dfc, "Denoising": denoise, "Seed": seed}
    if lesion_info:
        meta["Lesion"] = {k: v for k, v in lesion_info.items() if k != "Warnings"}
    if lag_info:
        meta["HemodynamicLag"] = {k: v for k, v in lag_info.items() if k != "Warnings"}
    if warnings:
        meta["Warnings"] = warnings
    return meta


#: Sidecar fields that must be equal across the subjects of a group and between a model and the
#: subjects it predicts.
SHARED_FIELDS = (
    "Space",
    "WindowLength_s",
    "WindowStep_vol",
    "WindowShape",
    "WindowEstimator",
    "MinWindowCoverage",
)
SHARED_DENOISING = ("Strategy", "HighPass_Hz", "LowPass_Hz", "SmoothingFWHM_mm")


def shared_parameters(meta: dict) -> dict:
    """The sidecar fields that must agree across subjects (and with a model at prediction time)."""
    out = {k: meta.get(k) for k in SHARED_FIELDS}
    out.update({f"Denoising.{k}": meta.get("Denoising", {}).get(k) for k in SHARED_DENOISING})
    return out
