"""Gather what a finished run wrote (sidecars, figures, predictions) and hand it to the report builders.

A report that fails is logged and skipped: it never turns a finished run into a failure.
"""

from __future__ import annotations

import fcntl
import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd

from bids_app import queries
from bids_app.config import RunConfig
from bids_app.reports import render_page
from bids_app.reports.about import about_rows, qc_problems
from bids_app.reports.boilerplate import methods_text, write_citation
from bids_app.reports.participant import build_participant_report
from bids_app.scores import parse_score
from workflows.columns import tsv_sidecar
from workflows.conformal import CLASS_NAMES, SET_SEPARATOR
from workflows.interfaces.reportlets import FIGURES
from workflows.labels import is_severe
from workflows.metadata import software_versions
from workflows.model_card import MIN_VALIDATION_SUBJECTS, in_training
from workflows.model_io import json_clean, read_card
from workflows.utils.bids import RunInputs
from workflows.utils.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from bids import BIDSLayout

    from bids_app.reports.group import CohortSubject

LOGGER = logging.getLogger("strokefc.reports")
#: Columns of predictions.tsv shown in predictions.html, in order.
PREDICTION_REPORT_COLUMNS = (
    "participant_id",
    "session",
    "prob_severe",
    "predicted_class",
    "prediction_set",
    "ul_fma_true",
    "class_true",
    "in_training",
    "model_type",
    "lesion_side",
    "source_voxel_size_mm",
    "grid_coverage",
)


class ParticipantPlan(Protocol):
    """What the reports read of a subject's plan (:class:`bids_app.participant_level.SubjectPlan`)."""

    subject: str
    runs: list[RunInputs]
    lesion_side: str
    lesion_source: str
    ul_fma: float | None
    notes: list[str]


def subject_dir(config: RunConfig, subject: str) -> Path:
    return config.output_dir / f"sub-{subject}"


def _first(paths: Iterable[Path]) -> Path | None:
    paths = sorted(paths)
    return paths[0] if paths else None


def run_report_data(config: RunConfig, run: RunInputs, layout: BIDSLayout | None = None) -> dict[str, Any]:
    """Figures, sidecar and warnings of one run, found with pybids in the output dataset."""
    from bids.layout import Query

    layout = layout or queries.derivatives_layout(config.output_dir)
    q = config.queries
    sidecars = [
        p
        for p in queries.find_run_outputs(
            layout,
            run.entities,
            seed="ipsiM1",
            stat="dfcsd",
            suffix="boldmap",
            extension=".json",
            space=q.space,
            desc=Query.NONE,  # the default window length's map (others: desc-win<length>)
        )
        if q.res is None or f"_res-{q.res}_" in p.name
    ]
    meta = json.loads(sidecars[0].read_text()) if sidecars else {}
    drawn = queries.find_run_outputs(
        layout, run.entities, datatype="figures", desc=list(FIGURES), suffix="bold"
    )
    figs = {}
    for fig in FIGURES:  # one query for the six (each pybids query costs about 10 ms)
        found = [p for p in drawn if f"_desc-{fig}_" in p.name]
        if found:
            figs[fig] = str(found[0])
    name = " ".join(run.name.split("_")) or f"sub-{run.entities['subject']}"
    qc = queries.find_run_outputs(layout, run.entities, suffix="qc", extension=".tsv")
    qc_rows = _read_qc_rows(qc[0]) if qc else []
    return {
        "name": name,
        "metadata": meta,
        "warnings": meta.get("Warnings", []),
        "figures": figs,
        "errors": qc_problems(qc_rows),
    }


def _read_qc_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a run's QC table (``..._qc.tsv``); an unreadable table is logged and read as empty."""
    try:
        return pd.read_csv(path, sep="\t", dtype=str, keep_default_na=False).to_dict("records")
    except (OSError, ValueError, pd.errors.ParserError):
        LOGGER.exception("Could not read %s", path)
        return []


def subject_summary(config: RunConfig, plan: ParticipantPlan, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Key facts and every processing parameter, for the report's summary table."""
    first = runs[0]["metadata"] if runs else {}
    kept = sum(r["metadata"].get("Denoising", {}).get("VolumesKept", 0) for r in runs)
    total = sum(r["metadata"].get("Denoising", {}).get("VolumesTotal", 0) for r in runs)
    return {
        "Subject": f"sub-{plan.subject}",
        "Runs used": ", ".join(r["name"] for r in runs),
        "Repetition time (s)": plan.runs[0].tr,
        "Volumes kept / total": f"{kept} / {total}",
        "Lesion hemisphere": f"{plan.lesion_side} (from {plan.lesion_source})",
        "UL-FMA": "unknown"
        if plan.ul_fma is None
        else f"{plan.ul_fma:g} ("
        f"{'severe' if is_severe(plan.ul_fma, config.group.severe_threshold) else 'mild-to-moderate'})",
        "Space": config.queries.space,
        "Denoising": f"{config.denoise.strategy}; band-pass "
        f"{config.denoise.high_pass}-{config.denoise.low_pass} "
        f"Hz; smoothing {config.denoise.smoothing_fwhm or 0} mm FWHM",
        "Seed": _seed_text(first.get("Seed", {})),
        "Windows": f"{config.window.window_length} ({first.get('WindowLength_vol', '?')} volumes), step "
        f"{config.window.window_step}, {config.window.window_shape}; min coverage "
        f"{config.window.min_window_coverage:g}",
        "Windows kept / dropped": ", ".join(
            f"{r['metadata'].get('WindowsKept', '?')} / {r['metadata'].get('WindowsDropped', '?')}"
            for r in runs
        ),
        "Dynamics beyond a stationary null": "; ".join(_null_text(r["metadata"]) for r in runs),
        "Lesion mask": _lesion_text(first.get("Lesion"), first.get("Seed", {})),
        "Hemodynamic lag (lesioned - other side)": "; ".join(_lag_text(r["metadata"]) for r in runs),
        **({"Notes": "; ".join(plan.notes)} if plan.notes else {}),
    }


def _lag_text(meta: dict) -> str:
    """The lag QC of a run, in words (see workflows.qc)."""
    lag = meta.get("HemodynamicLag")
    if not lag:
        return "not measured"
    verdict = "FLAGGED: dFC of the lesioned side is unreliable" if lag.get("Flagged") else "within threshold"
    return (
        f"M1 {lag.get('M1IpsiMinusContra_s')} s, hemisphere {lag.get('HemisphereIpsiMinusContra_s')} s "
        f"({verdict}, threshold {lag.get('Threshold_s')} s)"
    )


def _lesion_text(lesion: dict | None, seed: dict) -> str:
    """Lesion volume, exclusion and seed overlap, in words."""
    if not lesion:
        return "none: the lesion stays in the maps"
    return (
        f"{lesion.get('LesionVolume_ml', '?')} ml; {lesion.get('LesionExcludedVoxels', '?')} voxels "
        f"(dilated by {lesion.get('LesionDilation_vox', '?')}) left the maps; "
        f"{100 * float(seed.get('fraction_lesioned', 0)):.0f}% of the seed was lesioned"
    )


def _null_text(meta: dict) -> str:
    """The top-target test of a run, in words (see workflows.dfc_null)."""
    null = meta.get("StationaryNull")
    if not null:
        return "not computed (--null-surrogates 0)"
    p, excess = null.get("TopTargetsPValue"), null.get("TopTargetsMeanExcess")
    verdict = (
        "more dynamics than a stationary process with the same spectra and static FC"
        if p is not None and p < 0.05
        else "no more dynamics than a stationary process with the same spectra and static FC"
    )
    return f"{verdict} (top targets: mean excess {excess:+.3f} SD of Fisher z, p = {p:.3f})"


def _seed_text(seed: dict) -> str:
    if not seed:
        return "unknown"
    src = seed.get("source", "")
    what = {
        "atlas": f"{seed.get('atlas', '')} {', '.join(seed.get('labels', []))}",
        "mask": f"mask {seed.get('file', '')}",
        "sphere": f"sphere r={seed.get('radius_mm', '')} mm at {seed.get('coords_mm', '')}",
    }
    return (
        f"{what.get(src, src)}; {seed.get('n_voxels', '?')} voxels; "
        f"{100 * float(seed.get('fraction_lesioned', 0) or 0):.0f}% lesioned"
    )


def find_prediction(config: RunConfig, subject: str) -> dict | None:
    """The subject's first prediction (its only one without sessions)."""
    found = find_predictions(config, subject)
    return next(iter(found.values())) if found else None


#: What a prediction of a training subject says (predictions.tsv, the subject report).
IN_TRAINING_NOTE = "in the training set: not a validation"


def training_flag(config: RunConfig, subject: str) -> str:
    """``yes`` when the model was trained on ``subject`` of this dataset, ``no``, or ``unknown``.

    The card records its training subjects by a hash of their id within the training dataset's
    identity (Name and DatasetDOI of dataset_description.json; :func:`workflows.model_card.in_training`).
    """
    if not config.model:
        return "unknown"
    path = config.bids_dir / "dataset_description.json"
    dataset = queries.read_json(path, "the dataset description") if path.is_file() else {}
    flag = in_training(read_card(config.model), dataset, subject)
    return "unknown" if flag is None else "yes" if flag else "no"


def find_predictions(config: RunConfig, subject: str) -> dict[str | None, dict]:
    """The subject's predictions by session (None: a subject-level prediction), flagged when the model
    was trained on the subject (``in_training``, :func:`training_flag`)."""
    out: dict[str | None, dict] = {}
    paths = sorted(subject_dir(config, subject).glob("**/*_desc-ulfma_prediction.json"))
    flag = training_flag(config, subject) if paths else "unknown"
    for path in paths:
        ses = next((p[4:] for p in path.name.split("_") if p.startswith("ses-")), None)
        out[ses] = {**json.loads(path.read_text()), "in_training": flag}
        if flag == "yes":
            out[ses]["validation_note"] = IN_TRAINING_NOTE
    return out


def _trajectory(predictions: dict[str | None, dict]) -> str:
    """Predictions over sessions, in order, for the participant report."""
    return "; ".join(
        f"ses-{ses}: "
        + (
            f"P(severe) {p['prob_severe']:.2f}"
            if p.get("prob_severe") is not None
            else f"UL-FMA {p.get('predicted_ul_fma', float('nan')):.1f}"
        )
        + f" ({p['predicted_class']})"
        for ses, p in sorted(predictions.items(), key=lambda kv: kv[0] or "")
    )


def write_participant_reports(
    config: RunConfig, plans: Sequence[ParticipantPlan], failures: dict[str, str]
) -> list[Path]:
    """One ``sub-<label>.html`` per finished subject, plus ``predictions.tsv`` when predicting."""
    methods = write_boilerplate(config)
    methods_md = methods.read_text() if methods else ""
    written = []
    layout = queries.derivatives_layout(config.output_dir) if plans else None
    about = about_rows(config)
    for plan in plans:
        try:
            runs = [run_report_data(config, run, layout) for run in plan.runs]
            predictions = find_predictions(config, plan.subject)
            prediction = next(iter(predictions.values())) if predictions else None
            summary = subject_summary(config, plan, runs)
            if len(predictions) > 1:
                summary["Predictions by session"] = _trajectory(predictions)
            errors = [e for run in runs for e in run["errors"]]
            if plan.subject in failures:
                errors.insert(0, failures[plan.subject])
            out = build_participant_report(
                config.output_dir / f"sub-{plan.subject}.html",
                subject=plan.subject,
                summary=summary,
                runs=runs,
                prediction=prediction,
                methods_md=methods_md,
                errors=errors,
                notes=list(plan.notes),
                about=about,
            )
            written.append(Path(out))
        except Exception:  # a report must never fail the run
            LOGGER.exception("The report of sub-%s could not be written", plan.subject)
    if config.model:
        update_predictions_table(config, list(plans))
    return written


@contextmanager
def locked(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (a lock file), for read-modify-write of shared tables."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def update_predictions_table(config: RunConfig, plans: list[ParticipantPlan]) -> Path:
    """Merge these subjects' predictions into ``output_dir/predictions.tsv`` (locked, atomic).

    Each row names its map by a BIDS URI in this dataset (``bids::sub-01/func/...``) and, when
    participants.tsv has the score, the true UL-FMA and class; ``predictions_summary.json`` then scores
    the model on every labelled row (external validation).
    """
    table = config.output_dir / "predictions.tsv"
    layout = queries.derivatives_layout(config.output_dir)
    rows = []
    for plan in plans:
        maps = queries.find_unit_maps(
            layout,
            plan.subject,
            space=config.queries.space,
            res=config.queries.res,
            combine_sessions=config.queries.combine_sessions,
        )
        session_scores = queries.read_session_scores(config.bids_dir, plan.subject, config.group.label_column)
        for session, row in find_predictions(config, plan.subject).items():
            row["session"] = f"ses-{session}" if session else "n/a"
            if session in maps:
                row["map_file"] = f"bids::{maps[session].relative_to(config.output_dir)}"
            score = plan.ul_fma
            if session is not None and session in session_scores:
                score = parse_score(
                    session_scores[session], f"sub-{plan.subject}_sessions.tsv", subject=plan.subject
                )
            if score is not None:
                row["ul_fma_true"] = score
                row["class_true"] = (
                    "severe" if is_severe(score, config.group.severe_threshold) else "mild-to-moderate"
                )
            rows.append(row)
    with locked(config.output_dir / ".predictions.lock"):
        old = _read_predictions(table)
        new = pd.DataFrame(
            [{k: v for k, v in r.items() if v is not None and not isinstance(v, (dict, list))} for r in rows]
        )
        if not old.empty and "participant_id" in old and not new.empty:
            old = old[~old["participant_id"].isin(new["participant_id"])]  # a re-run replaces every session
        merged = pd.concat([old, new.astype(str)], ignore_index=True) if not new.empty else old
        if "participant_id" in merged:
            first = [
                c
                for c in (
                    "participant_id",
                    "session",
                    "prob_severe",
                    "predicted_ul_fma",
                    "predicted_class",
                    "prediction_set",
                    "ul_fma_lower",
                    "ul_fma_upper",
                )
                if c in merged
            ]
            merged = merged[first + [c for c in merged.columns if c not in first]]
            merged = merged.sort_values([c for c in ("participant_id", "session") if c in merged])
        atomic_write_text(table, merged.to_csv(sep="\t", index=False))
        atomic_write_json(
            table.with_suffix(".json"),
            tsv_sidecar(merged.columns, "Predictions of a trained model, one row per subject (and session)"),
        )
        summary = external_validation(merged, config.group.severe_threshold)
        if summary:
            atomic_write_text(
                config.output_dir / "predictions_summary.json",
                json.dumps(json_clean(summary), indent=2, sort_keys=True, allow_nan=False) + "\n",
            )
        write_predictions_report(config, merged, summary)
    return table


def _read_predictions(table: Path) -> pd.DataFrame:
    """The predictions table so far (empty when absent, or empty after a run that predicted nobody)."""
    try:
        return pd.read_csv(table, sep="\t", dtype=str) if table.exists() else pd.DataFrame()
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def external_validation(table: pd.DataFrame, threshold: float = 20.0) -> dict | None:
    """The labelled predictions scored (:func:`workflows.external_validation.validation_summary`).

    Predictions of the model's training subjects (``in_training`` = yes) are left out and counted: an
    in-sample score is not a validation. Fewer than :data:`workflows.model_card.MIN_VALIDATION_SUBJECTS`
    labelled subjects get an ``uninformative`` warning beside the metrics. Returns None without labels;
    with one class only, the counts and a note (nothing can be scored).
    Predictions of a regression model (``predicted_ul_fma``) are scored against ``ul_fma_true`` instead
    (:func:`regression_validation`).
    """
    training = table["in_training"].astype(str).eq("yes") if "in_training" in table else None
    excluded = int(training.sum()) if training is not None else 0
    left_out = (
        {
            "n_excluded_in_training": excluded,
            "excluded_note": f"{excluded} prediction(s) of the model's training subjects left out "
            f"({IN_TRAINING_NOTE})",
        }
        if excluded
        else {"n_excluded_in_training": 0}
    )
    if training is not None:
        table = table[~training]
    summary = _validation(table, threshold)
    if excluded and not (summary or {}).get("n_labelled"):
        return {
            **left_out,
            "n_labelled": 0,
            "note": f"only training subjects are labelled ({IN_TRAINING_NOTE})",
        }
    if summary is None:
        return None
    summary = {**summary, **left_out, **conformal_validation(table)}
    n = summary.get("n_subjects", summary.get("n_labelled", 0))
    if summary.get("n_labelled") and n < MIN_VALIDATION_SUBJECTS:
        summary["uninformative"] = (
            f"only {n} labelled subject(s) outside the training set: fewer than "
            f"{MIN_VALIDATION_SUBJECTS}, so these metrics and their intervals are uninformative"
        )
    return summary


def conformal_validation(table: pd.DataFrame) -> dict:
    """``{"conformal": ...}``: how often the labelled rows' conformal sets (or UL-FMA intervals) held the
    true class (score), against the coverage the model states; {} without conformal columns or labels."""
    if "conformal_coverage" not in table:
        return {}
    if "prediction_set" in table and "class_true" in table:
        rows = table[table["class_true"].isin(CLASS_NAMES) & table["prediction_set"].notna()]
        hits = [t in str(s).split(SET_SEPARATOR) for t, s in zip(rows["class_true"], rows["prediction_set"])]
    elif {"ul_fma_lower", "ul_fma_upper", "ul_fma_true"} <= set(table.columns):
        values = table[["ul_fma_lower", "ul_fma_upper", "ul_fma_true"]].apply(pd.to_numeric, errors="coerce")
        rows = values.dropna()
        hits = list(
            (rows["ul_fma_lower"] <= rows["ul_fma_true"]) & (rows["ul_fma_true"] <= rows["ul_fma_upper"])
        )
    else:
        return {}
    if not hits:
        return {}
    stated = pd.to_numeric(table["conformal_coverage"], errors="coerce").dropna()
    return {
        "conformal": {
            "stated_coverage": float(stated.iloc[0]) if len(stated) else None,
            "n_labelled": len(hits),
            "empirical_coverage": float(sum(hits)) / len(hits),
        }
    }


def _validation(table: pd.DataFrame, threshold: float) -> dict | None:
    """:func:`external_validation` of the rows that remain once training subjects are left out."""
    if "predicted_ul_fma" in table and "ul_fma_true" in table:
        return regression_validation(table, threshold)
    if "class_true" not in table or "prob_severe" not in table:
        return None
    labelled = table[table["class_true"].isin(["severe", "mild-to-moderate"])]
    y = (labelled["class_true"] == "severe").to_numpy(int)
    prob = labelled["prob_severe"].astype(float).to_numpy()
    if len(y) < 2 or len(set(y)) < 2:
        return {"n_labelled": len(y), "note": "both classes are needed to score the model"}
    from workflows.external_validation import validation_summary  # scikit-learn: only when scoring

    summary = validation_summary(y, prob, labelled["participant_id"].astype(str).tolist())
    resampled = table["resampled"].astype(str).str.lower().eq("true") if "resampled" in table else None
    return {
        "n_labelled": len(y),
        **summary,
        "maps_resampled": int(resampled.sum()) if resampled is not None else None,
    }


def regression_validation(table: pd.DataFrame, threshold: float) -> dict:
    """MAE, RMSE, Pearson/Spearman r, R² and the thresholded balanced accuracy of predicted UL-FMA scores
    against the true ones, with subject-bootstrap 95% intervals (external validation of a regression model).
    """
    true = pd.to_numeric(table["ul_fma_true"], errors="coerce")
    predicted = pd.to_numeric(table["predicted_ul_fma"], errors="coerce")
    keep = true.notna() & predicted.notna()
    y, p = true[keep].to_numpy(float), predicted[keep].to_numpy(float)
    if len(y) < 3:
        return {"n_labelled": len(y), "note": "at least 3 labelled predictions are needed to score the model"}
    from workflows.stats import bootstrap_comparison, regression_metrics  # scikit-learn: only when scoring

    rows = [
        {"participant_id": pid, "repeat": 0, "model": "model", "y_true": t, "predicted_score": v}
        for pid, t, v in zip(table["participant_id"][keep], y, p)
    ]
    scores = partial(regression_metrics, threshold=threshold)
    boot = bootstrap_comparison(rows, "model", scores=scores, value="predicted_score", compare="mae")
    metrics = scores(y, p)
    return {
        "target": "regression",
        "n_labelled": len(y),
        "severe_threshold": threshold,
        **{k: {"value": v, "ci95": boot["model"][k]["ci95"]} for k, v in metrics.items()},
        "interval": "95% subject bootstrap (1000 draws)",
    }


def write_predictions_report(config: RunConfig, table: pd.DataFrame, summary: dict | None) -> Path | None:
    """``output_dir/predictions.html``: every prediction, how maps met the model grid, the validation."""
    try:
        rows = table.to_dict("records")
        notes = sorted({str(r["resampling"]) for r in rows if str(r.get("resampling", "nan")) != "nan"})
        html = render_page(
            "predictions.html",
            title="strokefc predictions",
            model=str(config.model),
            rows=rows,
            columns=[c for c in PREDICTION_REPORT_COLUMNS if c in table],
            resampling=notes,
            summary=summary,
        )
        return atomic_write_text(config.output_dir / "predictions.html", html)
    except Exception:  # a report must never fail the run
        LOGGER.exception("The predictions report could not be written")
        return None


def write_boilerplate(config: RunConfig) -> Path | None:
    """``output_dir/logs/CITATION.md`` and ``.html`` from the run's parameters and versions."""
    try:
        md = methods_text(config, software_versions())
        md_path, _ = write_citation(config.output_dir / "logs", md)
        return Path(md_path)
    except Exception:  # the methods text must never fail the run
        LOGGER.exception("The methods boilerplate could not be written")
        return None


def write_group_report(
    config: RunConfig, subjects: Sequence[CohortSubject], excluded: dict[str, str]
) -> Path | None:
    """``output_dir/group.html`` (see :mod:`bids_app.reports.group`); never fails the run."""
    # imported here: the group report's modules pull in PyTorch and scikit-learn (seconds of CPU), which
    # the participant level, a user of this module, never needs
    from bids_app.reports.group import write_group_report as build_group_report

    try:
        return build_group_report(config, subjects, excluded)
    except Exception:  # the report must never fail the run
        LOGGER.exception("The group report could not be written")
        return None
