"""The participant report ``sub-<label>.html``: summary, per-run figures, prediction and methods."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bids_app.reports import format_value, render_page
from bids_app.reports.boilerplate import markdown_to_html
from workflows.conformal import EMPTY_SET, SET_SEPARATOR
from workflows.utils.io import atomic_write_text

FIGURE_TITLES = {
    "seed": "Seed and lesion",
    "confounds": "Head motion and censoring",
    "carpet": "Carpet plots",
    "seedts": "Seed time series and windowed correlation",
    "maps": "Connectivity maps",
    "dynamics": "Dynamics beyond a stationary null, and hemodynamic lag",
}
FIGURE_CAPTIONS = {
    "seed": "Seed mask (ipsilesional M1, orange) on the MNI152 template in three orthogonal views through "
    "its centre; the run's brain mask is outlined in dashed grey and the lesion mask in blue when one "
    "was given.",
    "confounds": "Framewise displacement (mm) per acquired volume after the dummy scans (grey band, "
    "dropped); red lines mark censored volumes, and the dashed line the FD threshold when scrubbing "
    "censored by it. The count in the title is of the volumes after the dummy scans, as in the summary.",
    "carpet": "Every brain voxel (rows, subsampled) over time, z-scored, before denoising (fMRIPrep output, "
    "dummy scans included) and after confound regression, filtering and smoothing.",
    "seedts": "Top: mean seed signal. Bottom: Fisher-z correlation of the seed with contralesional M1, "
    "ipsilesional SMA and ipsilesional thalamus in each sliding window (dropped windows in grey).",
    "maps": "Axial mosaics on the MNI152 template (template orientation, not lesion-aligned) of the dFC "
    "variability (SD of windowed Fisher z), the mean windowed Fisher z and the static FC (Fisher z) "
    "maps; the seed is outlined in orange and the lesion in blue. The colour scales are fixed, the same "
    "for every subject, and stated in each row's title.",
    "dynamics": "Top (when the stationary null ran, --null-surrogates): the dFC excess, the observed dFC SD "
    "minus the mean SD of phase-randomised surrogates with the same spectra and static FC but no "
    "dynamics (stat-dfcexcess; SD of Fisher z): red where the seed coupling varies more than a "
    "stationary process would, blue where less. Bottom: the hemodynamic lag of each voxel against the "
    "brain mean (stat-lag, seconds; positive: later). A lag that differs between the lesioned and the "
    "other hemisphere distorts the dFC of the late side (see the summary's lag line).",
}


def _cv_text(value: float | dict[str, Any] | None) -> str:
    """The model's cross-validated balanced accuracy, from a number or a {mean, sd, ci95} record."""
    if isinstance(value, dict):
        text = f"{format_value(value.get('mean'))}"
        if value.get("sd") is not None:
            text += f" \u00b1 {format_value(value['sd'])} (SD)"
        if value.get("ci95"):
            lo, hi = value["ci95"]
            text += f", 95% interval {format_value(lo)} to {format_value(hi)}"
        return text
    return format_value(value) if value is not None else "not recorded in the model card"


def _prediction_context(prediction: dict | None) -> dict | None:
    if not prediction:
        return None
    prob = prediction.get("prob_severe")
    return {
        "prob_severe": prob,
        "predicted_ul_fma": prediction.get("predicted_ul_fma"),  # a regression model's score
        "percent": round(100 * min(max(float(prob), 0.0), 1.0), 1) if prob is not None else 0,
        "predicted_class": prediction.get("predicted_class", "unknown"),
        "label_definition": prediction.get("label_definition", ""),
        "threshold": prediction.get("decision_threshold", 0.5),
        "model_id": prediction.get("model_id") or "unknown",
        "model_type": prediction.get("model_type") or "unknown",
        "calibrated": bool(prediction.get("calibrated")),
        "in_training": prediction.get("in_training") or "unknown",
        "cv_text": _cv_text(prediction.get("model_cv_balanced_accuracy")),
        "figure": prediction.get("figure"),
        "resampling": prediction.get("resampling"),  # how the map met the model's grid
        "conformal": _conformal_text(prediction),
    }


def _conformal_text(prediction: dict) -> str | None:
    """The conformal prediction set or UL-FMA interval in words (None when the model has none)."""
    coverage = prediction.get("conformal_coverage")
    if coverage is None:
        return None
    stated = f"{100 * float(coverage):g}%"
    if prediction.get("ul_fma_lower") is not None:
        return (
            f"UL-FMA between {format_value(prediction['ul_fma_lower'])} and "
            f"{format_value(prediction['ul_fma_upper'])} ({stated} conformal interval)"
        )
    classes = str(prediction.get("prediction_set", ""))
    if classes == EMPTY_SET:
        return (
            f"no class at {stated} (conformal set empty: this map is unlike the calibration subjects of "
            "either class)"
        )
    named = classes.split(SET_SEPARATOR)
    return (
        " or ".join(named)
        + f" ({stated} conformal prediction set"
        + ("; the model cannot tell the classes apart for this subject" if len(named) > 1 else "")
        + ")"
    )


def dynamics_rows(meta: dict) -> list[dict]:
    """Dynamics against the stationary null by window length, from a run's sidecar: for the voxels most
    coupled to the seed, the observed dFC SD, the surrogates' mean SD, their difference (the excess) and
    the p-value of the test; one row per window length (the default first). Empty without a null."""
    records = [meta, *(meta.get("OtherTimescales") or {}).values()]
    rows = []
    for rec in records:
        null = rec.get("StationaryNull") or {}
        if not null or rec.get("WindowLength_s") is None:
            continue
        rows.append(
            {
                "timescale": f"{float(rec['WindowLength_s']):g} s",
                "observed_sd": null.get("TopTargetsObservedSD"),
                "null_mean_sd": null.get("TopTargetsNullMeanSD"),
                "excess": null.get("TopTargetsMeanExcess"),
                "p": null.get("TopTargetsPValue"),
            }
        )
    return rows


def build_participant_report(
    out_html: str | Path,
    *,
    subject: str,
    summary: dict,
    runs: list[dict],
    prediction: dict | None = None,
    methods_md: str = "",
    errors: list | None = None,
    notes: list | None = None,
    about: Mapping[str, str] | None = None,
) -> Path:
    """Write one participant's self-contained HTML report and return its path.

    ``runs`` holds ``{"name", "metadata", "warnings", "figures": {kind: path}}`` per run (figure kinds
    of :data:`FIGURE_TITLES`; missing ones are noted, not fatal); ``prediction`` holds prob_severe,
    predicted_class, model_id, model_cv_balanced_accuracy, label_definition and figure. ``errors`` (a
    failure, a run excluded by QC) and the runs' sidecar ``Warnings`` and the subject's ``notes`` fill the
    "Errors and warnings" section; ``about`` the "About" table (:func:`bids_app.reports.about.about_rows`).
    """
    label = subject[4:] if subject.startswith("sub-") else subject
    run_ctx, all_warnings = [], []
    for run in runs:
        warnings = [str(w) for w in run.get("warnings") or []]
        all_warnings += [f"{run.get('name', '')}: {w}" for w in warnings]
        run_ctx.append(
            {
                "name": run.get("name", ""),
                "warnings": warnings,
                "figures": dict(run.get("figures") or {}),
                "metadata": run.get("metadata") or {},
                "dynamics": dynamics_rows(run.get("metadata") or {}),
                "metadata_json": json.dumps(run.get("metadata") or {}, indent=2, sort_keys=True, default=str),
            }
        )
    page = render_page(
        "participant.html",
        title=f"strokefc report: sub-{label}",
        summary=summary or {},
        runs=run_ctx,
        all_warnings=all_warnings,
        prediction=_prediction_context(prediction),
        methods_html=markdown_to_html(methods_md)
        if methods_md
        else '<h2>Methods</h2><p class="missing">The methods text was not written (see logs/).</p>',
        errors=[str(e) for e in errors or []],
        notes=[str(n) for n in notes or []],
        about=dict(about or {}),
        figure_titles=FIGURE_TITLES,
        figure_captions=FIGURE_CAPTIONS,
    )
    return atomic_write_text(Path(out_html), page)
