"""The group report ``output_dir/group.html``: cohort, cross-validation, group maps, methods.

Reads the group outputs described in the group contract (``output_dir/group/``: cv_summary.json,
cv_predictions.tsv, training_curves.tsv, learning_curves.tsv, decision_curves.tsv, cohort.tsv, the group
maps, saliency_regions.tsv); any of them may be missing, in which case its section says so. Figures are
written to ``output_dir/group/figures/`` and embedded in the page.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from bids_app.config import RunConfig, with_participant_options
from bids_app.reports import render_page
from bids_app.reports.about import about_rows
from bids_app.reports.boilerplate import markdown_to_html, methods_text, write_citation
from bids_app.reports.sites import class_rows, site_sentences, site_table
from workflows import plotting as rl
from workflows.activation_patterns import PATTERN_REGIONS
from workflows.comparisons import above_chance, effect_kind, paired_verdict
from workflows.explain import SALIENCY_FILES, SALIENCY_REGIONS
from workflows.group_inputs import CLASS_MAP_TEXT, COHORT_COLUMNS, SITE_COLUMN, is_severe
from workflows.incremental import clinical_value_sentence
from workflows.metadata import software_versions
from workflows.models import (
    CNN_MODEL,
    MODELS,
    PRIMARY_MODEL,
    REGRESSION_REFERENCES,
    model_label,
    ordered,
)
from workflows.params import AUTO_TIMESCALE
from workflows.permutation import null_scores
from workflows.stats import COMPARE_METRIC, REGRESSION_METRICS
from workflows.utils.io import atomic_write_text

LOGGER = logging.getLogger("strokefc.reports")

METRICS = {
    "balanced_accuracy": "Balanced accuracy",
    "roc_auc": "ROC AUC",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "f1": "F1 score",
    "brier": "Brier score (lower is better; see the calibration figure)",
    "mae": "MAE (UL-FMA points)",
    "rmse": "RMSE (UL-FMA points)",
    "pearson_r": "Pearson r",
    "spearman_r": "Spearman r",
    "r2": "R²",
}


def regression_rows(summary: dict) -> list[dict]:
    """One row per regression model: pooled out-of-fold MAE, r, R² and thresholded balanced accuracy
    with subject-bootstrap intervals, and its MAE difference from the mean reference and the confound
    model (negative: closer to the true scores)."""
    boot = summary.get("bootstrap", {})
    rows = []
    for model in ordered(boot):
        rec = boot[model]
        row = {
            "model": model_label(model, "regression"),
            "description": summary.get("model_descriptions", {}).get(model, ""),
            **{k: rec.get(k, {}).get("value") for k in REGRESSION_METRICS},
            **{f"{k}_ci": rec.get(k, {}).get("ci95") for k in REGRESSION_METRICS},
        }
        for ref in REGRESSION_REFERENCES:
            diff = rec.get(f"difference_from_{ref}", {}).get(COMPARE_METRIC["regression"])
            row[f"vs_{ref}"] = diff["value"] if diff else None
            row[f"vs_{ref}_ci"] = diff["ci95"] if diff else None
        rows.append(row)
    return rows


def regression_sentences(summary: dict) -> list[str]:
    """In words: does each model predict the UL-FMA better than the training mean and the confound model?

    "Beats" only when the paired MAE interval excludes 0 and the better model is above chance itself
    (:func:`workflows.comparisons.paired_verdict`).
    """
    boot = summary.get("bootstrap", {})
    permutation = summary.get("permutation")
    out = []
    for model in [m for m in ordered(boot) if m in MODELS and m != REGRESSION_REFERENCES[0]]:
        rec = boot[model]
        label = model_label(model, "regression")
        lo, hi = rec["mae"]["ci95"]
        text = (
            f"{label}: out-of-fold MAE {rec['mae']['value']:.1f} UL-FMA points (95% bootstrap interval "
            f"{lo:.1f} to {hi:.1f}), R² {rec['r2']['value']:.2f}."
        )
        verdicts = [
            record["sentence"]
            for ref in REGRESSION_REFERENCES
            if model != ref
            and (record := paired_verdict(boot, permutation, model, ref, "regression")) is not None
        ]
        out.append(" ".join([text, *verdicts]))
    return out


def _regression_scatter(group_dir: Path, fig_dir: Path, summary: dict, notes: list) -> list[dict]:
    """The predicted-vs-true reportlet of a regression run (one panel per model)."""
    preds = _read_tsv(group_dir / "cv_predictions.tsv")
    if preds is None or preds.empty or "predicted_score" not in preds:
        notes.append("No cross-validated score predictions (group/cv_predictions.tsv): no scatter plot.")
        return []
    threshold = float((summary.get("settings") or {}).get("severe_threshold", 20.0))
    path = _draw(
        "predicted-vs-true",
        rl.plot_regression_scatter,
        notes,
        preds,
        fig_dir / "desc-regression_cv.svg",
        threshold,
        {m: model_label(m, "regression") for m in preds["model"].unique()},
        tuple(MODELS),
    )
    caption = (
        "Out-of-fold predicted UL-FMA against the true score, each subject's prediction averaged over "
        f"repeats; dashed: identity, dotted: the severe threshold ({threshold:g}) on both axes."
    )
    return [{"path": path, "title": "Predicted vs true UL-FMA", "caption": caption, "wide": True}]


def _interval(ci: Any) -> str:
    return f"{ci[0]:.2f} to {ci[1]:.2f}" if ci and None not in ci else "no interval"


def _primary_permutation(summary: dict, primary: str) -> float | None:
    perm = summary.get("permutation") or {}
    models = perm.get("models") or ({perm["model"]: perm} if perm.get("model") else {})
    return (models.get(primary) or {}).get("p_value")


def result_sentences(summary: dict) -> list[str]:
    """The answer first, in words: does the primary model beat chance, and the controls on the same folds?

    Read from ``cv_summary.json`` only: the pooled out-of-fold score of the primary model with its
    subject-bootstrap interval, whether it is above chance (its permutation p when run, else the
    interval: :func:`workflows.comparisons.above_chance`), the gated verdict against each control
    (:func:`workflows.comparisons.paired_verdict`: "beats" only when the paired interval excludes 0
    and the better model is above chance by its own permutation test), and whether the effect is
    dynamic or static by the same gate (:func:`workflows.comparisons.effect_kind`).
    """
    boot = summary.get("bootstrap") or {}
    permutation = summary.get("permutation")
    primary = summary.get("primary_model", PRIMARY_MODEL)
    if primary not in boot:
        return []
    regression = summary.get("target") == "regression"
    target = "regression" if regression else "classification"
    metric = COMPARE_METRIC[target]
    name = model_label(primary, target)
    rec = boot[primary].get(metric) or {}
    controls = [m for m, spec in MODELS.items() if spec.role == "control" and m in boot]
    chance = above_chance(boot, permutation, primary, target)
    chance_words = {
        True: "above chance",
        False: "not distinguishable from chance",
        None: "chance not assessed",
    }[chance["above_chance"]]
    out = []
    if regression:
        out.append(
            f"The primary model ({name}) predicts the UL-FMA with an out-of-fold MAE of "
            f"{rec.get('value', float('nan')):.1f} points (95% subject-bootstrap interval "
            f"{_interval(rec.get('ci95'))}): {chance_words} ({chance['evidence']})."
        )
        # the primary's own difference from each control is stored on the primary
        records = {c: paired_verdict(boot, permutation, primary, c, target) for c in controls}
        mine, theirs = "model_better", "reference_better"
    else:
        out.append(
            f"The primary model ({name}) tells severe from mild-to-moderate impairment with a balanced "
            f"accuracy of {rec.get('value', float('nan')):.2f} (95% subject-bootstrap interval "
            f"{_interval(rec.get('ci95'))}): {chance_words} ({chance['evidence']})."
        )
        # each control's difference from the primary is stored on the control
        records = {c: paired_verdict(boot, permutation, c, primary, target) for c in controls}
        mine, theirs = "reference_better", "model_better"
    groups: dict[str, list[str]] = {"better": [], "same": [], "worse": [], "untested": []}
    for control, record in records.items():
        if record:
            verdict = record["verdict"]
            key = (
                "better"
                if verdict == mine
                else "worse"
                if verdict == theirs
                else "same"
                if verdict == "no_difference"
                else "untested"
            )
            groups[key].append(model_label(control, target))
    parts = []
    if groups["better"]:
        parts.append("it beats " + ", ".join(groups["better"]))
    if groups["same"]:
        parts.append("it does not differ from " + ", ".join(groups["same"]))
    if groups["worse"]:
        parts.append(
            ", ".join(groups["worse"]) + (" does" if len(groups["worse"]) == 1 else " do") + " better"
        )
    if groups["untested"]:
        parts.append(
            "it differs from "
            + ", ".join(groups["untested"])
            + ", but the better of the two is not shown above chance by a permutation test, so no claim"
        )
    if parts:
        out.append(
            "On the same folds (paired subject bootstrap of the difference, 95% interval): "
            + "; ".join(parts)
            + "."
        )
        if groups["same"] or groups["worse"] or groups["untested"]:
            out.append(
                "So these data do not show that the primary model does better than "
                + ", ".join(groups["same"] + groups["worse"] + groups["untested"])
                + "; the table below and the sentences under Cross-validation give the intervals."
            )
        else:
            out.append("So the primary model does better than every control on the same folds.")
    elif not controls:
        out.append("No control model ran (static FC, mean dFC and motion/QC need their inputs).")
    out.append(effect_kind(summary)["sentence"])
    return out


def result_rows(summary: dict) -> list[dict]:
    """The compact closing table: per model, balanced accuracy with its interval, AUC, and against chance
    and the primary, each as one short cell."""
    rows = []
    primary = summary.get("primary_model", PRIMARY_MODEL)
    for row in comparison_rows(summary):
        lo = row["ba_ci"][0] if row["ba_ci"] else None
        diff = row["diff_ci"]
        versus = "\u2014"
        if diff and None not in diff:
            verdict = "better" if diff[0] > 0 else "worse" if diff[1] < 0 else "no difference"
            versus = f"{verdict} ({row['diff']:+.2f}, {diff[0]:+.2f} to {diff[1]:+.2f})"
        rows.append(
            {
                "model": row["model"],
                "primary": row["name"] == primary,
                "description": row["description"],
                "ba": f"{row['ba']:.2f} [{_interval(row['ba_ci'])}]",
                "auc": row["auc"],
                "chance": "above" if lo is not None and lo > 0.5 else "not above",
                "versus": versus,
                "p": row["p"],
            }
        )
    return rows


def comparison_rows(summary: dict) -> list[dict]:
    """One row per model: pooled out-of-fold BA with its subject-bootstrap interval, and the paired
    difference from the primary model with its bootstrap interval and corrected t-test p."""
    boot, tests = summary.get("bootstrap", {}), summary.get("paired_tests", {})
    primary = summary.get("primary_model", PRIMARY_MODEL)
    rows = []
    for model in ordered(boot):
        ba = boot[model]["balanced_accuracy"]
        diff = boot[model].get(f"difference_from_{primary}", {}).get("balanced_accuracy")
        test = tests.get(model, {})
        rows.append(
            {
                "name": model,
                "model": model_label(model),
                "description": summary.get("model_descriptions", {}).get(model, ""),
                "ba": ba["value"],
                "ba_ci": ba["ci95"],
                "auc": boot[model]["roc_auc"]["value"],
                "diff": diff["value"] if diff else None,
                "diff_ci": diff["ci95"] if diff else None,
                "p": test.get("p_two_sided"),
            }
        )
    return rows


def comparison_sentences(summary: dict) -> list[str]:
    """What the comparison means, in words: above chance or not, and dFC-SD against each control."""
    boot = summary.get("bootstrap", {})
    primary = summary.get("primary_model", PRIMARY_MODEL)
    if primary not in boot:
        return []
    out = []
    for model in [m for m in MODELS if m in boot]:
        lo, hi = boot[model]["balanced_accuracy"]["ci95"]
        label = model_label(model)
        chance = above_chance(boot, summary.get("permutation"), model, "classification")
        verdict = (
            "above chance"
            if chance["above_chance"]
            else "not distinguishable from chance"
            if chance["above_chance"] is False
            else "chance not assessed"
        )
        out.append(
            f"{label}: balanced accuracy {boot[model]['balanced_accuracy']['value']:.2f} "
            f"(95% bootstrap interval {lo:.2f} to {hi:.2f}), {verdict} ({chance['evidence']})."
        )
    # the controls first, then the other models; "beats" only with the paired interval excluding 0 and
    # the better model above chance itself (workflows.comparisons)
    others = [m for m, spec in MODELS.items() if spec.role == "control"]
    others += [m for m, spec in MODELS.items() if spec.role in ("model", "baseline")]
    permutation = summary.get("permutation")
    for control in others:
        record = paired_verdict(boot, permutation, control, primary, "classification")
        if record:
            out.append(record["sentence"])
    qcfc = summary.get("qc_fc", {})
    if qcfc.get("computed"):
        share = qcfc["fraction_p_below_alpha"]
        out.append(
            f"QC-FC (Ciric et al. 2017): across {qcfc['n_subjects']} subjects, mean FD correlates with the "
            f"dFC-SD of {100 * share:.1f}% of {qcfc['n_voxels']} voxels at uncorrected p < {qcfc['alpha']:g} "
            f"(about {100 * qcfc['alpha']:.0f}% expected without a motion effect; median |r| "
            f"{qcfc['median_abs_r']:.2f})"
            + (
                ": motion shapes the maps, so read the models against the motion-only control."
                if share > 2 * qcfc["alpha"]
                else "."
            )
        )
    for name, text in (
        ("censored_fraction", "censored fraction"),
        ("dof_remaining", "degrees of freedom left"),
        ("lesion_volume_ml", "lesion volume (ml)"),
    ):
        q = summary.get("quality_by_class", {}).get(name)
        if q and q["p_mann_whitney"] < 0.05:
            out.append(
                f"The {text} differs by class: median {q['median_severe']:.3g} (severe) vs "
                f"{q['median_mild']:.3g} (mild-to-moderate), Mann-Whitney p = {q['p_mann_whitney']:.3g}; "
                "the confound-only control shows how far it alone predicts the class."
            )
    fd = summary.get("quality_by_class", {}).get("mean_fd_mm")
    if fd:
        differs = fd["p_mann_whitney"] < 0.05
        out.append(
            f"Mean framewise displacement: median {fd['median_severe']:.3f} mm (severe) vs "
            f"{fd['median_mild']:.3f} mm (mild-to-moderate), Mann-Whitney p = {fd['p_mann_whitney']:.3g}"
            + (
                ": motion differs by class, so read the map models against the motion-only control."
                if differs
                else "."
            )
        )
    return out


MAP_FILES = {  # title -> file name in output_dir/group
    "severe: mean dFC SD": "desc-severe_dfcsd.nii.gz",
    "mild-to-moderate: mean dFC SD": "desc-mild_dfcsd.nii.gz",
    "difference (severe - mild)": "desc-difference_dfcsd.nii.gz",
    "held-out CNN saliency, severe subjects": SALIENCY_FILES["severe"],
    "held-out CNN saliency, mild-to-moderate subjects": SALIENCY_FILES["mild"],
}


def map_files(stat: str) -> dict[str, str]:
    """:data:`MAP_FILES` for the class maps of the group's map (``--map``)."""
    if stat == "dfcsd":
        return dict(MAP_FILES)
    what = CLASS_MAP_TEXT.get(stat, stat)
    return {
        f"severe: mean {what}": f"desc-severe_{stat}.nii.gz",
        f"mild-to-moderate: mean {what}": f"desc-mild_{stat}.nii.gz",
        "difference (severe - mild)": f"desc-difference_{stat}.nii.gz",
        **{t: f for t, f in MAP_FILES.items() if "saliency" in t},
    }


def clinical_and_conformal_sentences(summary: dict) -> list[str]:
    """The primary model's value over the clinical baseline (workflows.incremental), and how often its
    conformal sets or intervals held the truth on held-out subjects (workflows.conformal), in words."""
    out = []
    primary = summary.get("primary_model", PRIMARY_MODEL)
    label = MODELS[primary].noun.removeprefix("the ") if primary in MODELS else primary
    if summary.get("clinical_value"):
        out.append(clinical_value_sentence(summary["clinical_value"], label))
    conformal = summary.get("conformal") or {}
    if conformal.get("empirical_coverage") is not None:
        stated = 100 * conformal["coverage"]
        what = "UL-FMA intervals" if summary.get("target") == "regression" else "prediction sets"
        text = (
            f"Conformal {what} of the {label} (stated coverage {stated:g}%, calibrated on the training "
            f"subjects of each fold) held the truth for {100 * conformal['empirical_coverage']:.0f}% of "
            f"{conformal['n_predictions']} held-out predictions"
        )
        if conformal.get("by_class"):
            text += " (" + ", ".join(f"{c} {100 * v:.0f}%" for c, v in conformal["by_class"].items()) + ")"
        shares = conformal.get("set_shares") or {}
        if shares.get("single class") is not None:
            text += f"; {100 * shares['single class']:.0f}% of the sets named a single class"
        if conformal.get("median_interval_width") is not None:
            text += f"; median interval width {conformal['median_interval_width']:.1f} points"
        out.append(text + ".")
    return out


def timescale_sentences(summary: dict) -> list[str]:
    """Which map the models read, and, per window length, whether dynamics beat static FC (the primary
    model at that window length against the static-FC control, same folds, subject bootstrap)."""
    out = []
    stat = (summary.get("map") or {}).get("stat")
    if stat and stat != "dfcsd":
        out.append(f"The map models read the stat-{stat} maps ({summary['map']['description']}).")
    ts = summary.get("timescales") or {}
    if ts.get("chosen_counts") and ts.get("requested") == AUTO_TIMESCALE:
        out.append(
            "Window length chosen inside each training fold (inner CV of the training subjects): "
            + ", ".join(f"{n} in {k} fold(s)" for n, k in sorted(ts["chosen_counts"].items()))
            + "."
        )
    static, boot = ts.get("static_control"), summary.get("bootstrap", {})
    target = "regression" if summary.get("target") == "regression" else "classification"
    for name, model in (ts.get("models") or {}).items():
        record = paired_verdict(boot, summary.get("permutation"), model, static, target) if static else None
        if record is None:
            continue
        verdict = {
            "model_better": "dynamics beat static FC",
            "reference_better": "static FC beats dynamics",
            "no_difference": "dynamics do not beat static FC",
            "winner_at_chance": "no claim (the better of the two is not above chance)",
            "untested": "no claim (the better of the two has no permutation test)",
        }[record["verdict"]]
        out.append(f"At {name} windows, {verdict}: {record['sentence']}")
    return out


def sensitivity_sentences(summary: dict) -> list[str]:
    """What this cohort could detect at best (``cv_summary.json`` ``detectable_effect``), if recorded."""
    statement = (summary.get("detectable_effect") or {}).get("statement")
    return [str(statement)] if statement else []


class CohortSubject(Protocol):
    """What the report reads of a group-level subject (:class:`bids_app.group_level.GroupSubject`)."""

    @property
    def subject(self) -> str: ...

    @property
    def lesion_side(self) -> str: ...

    @property
    def ul_fma(self) -> float: ...


def _read_json(path: Path) -> dict | None:
    """An optional JSON record (None when missing or unreadable: its section says so)."""
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except (OSError, ValueError):
        LOGGER.exception("Could not read %s", path)
        return None


def _read_tsv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, sep="\t", na_values="n/a", keep_default_na=True)
    except Exception:  # an unreadable optional table is reported as missing
        LOGGER.exception("Could not read %s", path)
        return None


def _records(table: pd.DataFrame) -> list[dict]:
    """Rows as dicts with NaN turned into None (shown as a dash)."""
    return [
        {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in row.items()}
        for row in table.to_dict("records")
    ]


def cohort_rows(
    cohort: pd.DataFrame | None,
    subjects: Iterable[CohortSubject],
    excluded: dict[str, str] | None,
    threshold: float,
) -> list[dict]:
    """The cohort table: ``cohort.tsv`` when written, else built from the subjects and exclusions."""
    if cohort is not None:
        rows = _records(cohort)
    else:
        rows = [
            {
                "participant_id": f"sub-{s.subject}",
                "ul_fma": s.ul_fma,
                "class": "severe" if is_severe(s.ul_fma, threshold) else "mild-to-moderate",
                "lesion_side": s.lesion_side,
                "included": True,
                "reason": "",
            }
            for s in subjects
        ]
    listed = {str(r.get("participant_id")) for r in rows}
    for label, reason in (excluded or {}).items():
        pid = label if str(label).startswith("sub-") else f"sub-{label}"
        if pid not in listed:
            rows.append(
                {
                    "participant_id": pid,
                    "ul_fma": None,
                    "class": None,
                    "lesion_side": None,
                    "included": False,
                    "reason": reason,
                }
            )
    for row in rows:
        for col in COHORT_COLUMNS:
            row.setdefault(col, None)
    return sorted(rows, key=lambda r: str(r["participant_id"]))


def _included(row: Mapping[str, Any]) -> bool:
    return str(row.get("included")).strip().lower() in ("true", "1", "yes")


def cohort_summary(rows: list[dict]) -> str:
    """One sentence: how many subjects, per class and lesion side, and how many were excluded."""
    inc = [r for r in rows if _included(r)]
    classes = pd.Series([r["class"] for r in inc if r["class"]]).value_counts().to_dict()
    sides = pd.Series([r["lesion_side"] for r in inc if r["lesion_side"]]).value_counts().to_dict()
    sessions = [r for r in inc if str(r.get("session") or "n/a") != "n/a"]
    if sessions:
        per_subject = pd.Series([r["participant_id"] for r in sessions]).value_counts()
        counts = per_subject.value_counts().sort_index().to_dict()
        text = (
            f"{len(inc)} subject-sessions included from {per_subject.size} subjects ("
            + ", ".join(f"{n} with {k} session{'s' if k > 1 else ''}" for k, n in counts.items())
            + "; cross-validation keeps every session of a subject on one side)"
        )
    else:
        text = f"{len(inc)} subjects included"
    if classes:
        text += " (" + ", ".join(f"{n} {c}" for c, n in sorted(classes.items())) + ")"
    if sides:
        text += "; lesion side " + ", ".join(f"{s}: {n}" for s, n in sorted(sides.items()))
    excluded = len(rows) - len(inc)
    return text + (f"; {excluded} excluded (reasons in the table)." if excluded else "; none excluded.")


def cv_sentence(summary: dict) -> str:
    """How the cross-validation was run, from ``cv_summary.json``."""
    cv = summary.get("cv", {})
    parts = []
    if cv:
        parts.append(
            f"{cv.get('folds', '?')}-fold cross-validation "
            + ("run once" if cv.get("repeats") == 1 else f"repeated {cv.get('repeats', '?')} times")
            + f", folds grouped by {cv.get('grouped_by', 'subject')}"
        )
    if summary.get("n_subjects") is not None:
        counts = summary.get("class_counts") or {}
        sessions = summary.get("n_sessions")
        several = sessions is not None and sessions != summary["n_subjects"]
        parts.append(
            f"{summary['n_subjects']} subjects"
            + (f" with {sessions} subject-sessions" if several else "")
            + (" (" + ", ".join(f"{n} {c}" for c, n in counts.items()) + ")" if counts else "")
        )
    if summary.get("samples"):
        parts.append(
            "one sample per "
            + (
                "subject map"
                if summary["samples"] == "maps"
                else "window map, window predictions averaged per subject"
            )
        )
    if summary.get("baseline"):
        parts.append(f"baseline: {summary['baseline']}")
    if summary.get("cnn_parameters"):
        parts.append(f"CNN with {int(summary['cnn_parameters']):,} trainable parameters")
    perm = summary.get("permutation")
    if perm:
        per_model = perm.get("models") or {perm.get("model", CNN_MODEL): perm}
        parts.append(
            f"permutation test over {perm.get('n', len(null_scores(perm)[1]))} label "
            f"permutations ({perm.get('repeats', 1)} repeat(s) of k-fold per draw"
            + (", of the MAE" if null_scores(perm)[0] == "mae" else "")
            + "): "
            + ", ".join(
                f"{model_label(m)} p = {v.get('p_value', float('nan')):.3g}"
                for m, v in sorted(per_model.items(), key=lambda kv: _model_rank(kv[0]))
            )
        )
    return ("; ".join(parts) + ".") if parts else ""


def _model_rank(model: str) -> int:
    return list(MODELS).index(model) if model in MODELS else len(MODELS)


CALIBRATION_NOTE = (
    "The probabilities are not calibrated: the models are fit with balanced class weights (as if both "
    "classes were equally common) and are not recalibrated, so read the Brier score and the calibration "
    "curves as a description, not as calibrated risks."
)


def calibration_note(summary: dict) -> str:
    """Whether the probabilities were recalibrated, in words (from ``cv_summary.json``)."""
    text = str(summary.get("calibration") or "")
    if not text or text.startswith("none"):
        return CALIBRATION_NOTE
    method, _, how = text.partition(": ")
    return f"Probabilities recalibrated ({method}): {how}."


def _draw(name: str, func: Callable[..., str], notes: list[str], *args: Any, **kwargs: Any) -> str | None:
    """Draw one figure; a failure is logged and noted on the page instead of failing the report."""
    try:
        return func(*args, **kwargs)
    except Exception as exc:
        LOGGER.exception("The %s figure could not be drawn", name)
        notes.append(f"The {name} figure could not be drawn ({type(exc).__name__}: {exc}).")
        return None


def curve_sentences(summary: dict) -> list[str]:
    """Decision curves, learning curve and minimum sample size of the primary model, in words (from
    ``cv_summary.json``: ``decision_curve``, ``learning_curve``, ``sample_size``)."""
    out = []
    primary = summary.get("primary_model", PRIMARY_MODEL)
    label = MODELS[primary].noun if primary in MODELS else primary
    decision = summary.get("decision_curve") or {}
    if decision.get("skipped"):
        out.append(f"No decision curves: {decision['skipped']}.")
    elif decision.get("statement"):
        out.append(f"Decision curves: for {label}, {decision['statement']}.")
    points = (summary.get("learning_curve") or {}).get("points") or []
    if len(points) > 1:
        metric = points[0]["metric"]
        name = "balanced accuracy" if metric == "balanced_accuracy" else "MAE"
        out.append(
            f"Learning curve: {label} reached a {name} of {points[0]['mean']:.2f} (SD {points[0]['sd']:.2f}) "
            f"trained on {points[0]['n_train_subjects']:.0f} subjects and {points[-1]['mean']:.2f} "
            f"(SD {points[-1]['sd']:.2f}) on {points[-1]['n_train_subjects']:.0f} (the full training "
            "folds), on the same test subjects."
        )
    size = summary.get("sample_size") or {}
    if size.get("skipped"):
        out.append(f"No sample-size figure: {size['skipped']}.")
    elif size.get("statement"):
        out.append(str(size["statement"]))
    return out


def curve_figures(group_dir: Path, fig_dir: Path, summary: dict, notes: list) -> list[dict]:
    """Decision curves (classification), the primary model's learning curve and the sample-size figure."""
    figures = []
    decisions = _read_tsv(group_dir / "decision_curves.tsv")
    primary = summary.get("primary_model", PRIMARY_MODEL)
    if decisions is not None and not decisions.empty:
        path = _draw(
            "decision curves",
            rl.plot_decision_curves,
            notes,
            decisions,
            fig_dir / "desc-decision_cv.svg",
            primary,
        )
        caption = (
            "Decision curves (Vickers & Elkin 2006): the net benefit of calling severe every patient "
            "whose out-of-fold probability of severe is at least the threshold probability (true "
            "positives per patient minus false positives weighted by the threshold's odds, t/(1-t)), "
            "mean over CV repeats, against treating every patient (grey) and treating none (dotted). A "
            "model helps a decision only at thresholds where its curve lies above both; the primary "
            "model's range over repeats is shaded. Net benefit reads the probabilities as risks: "
            + calibration_note(summary)
        )
        figures.append({"path": path, "title": "Decision curves", "caption": caption, "wide": False})
    learning = _read_tsv(group_dir / "learning_curves.tsv")
    if learning is not None and not learning.empty:
        metric = "mae" if summary.get("target") == "regression" else "balanced_accuracy"
        path = _draw(
            "learning curve",
            rl.plot_learning_curve,
            notes,
            learning,
            fig_dir / "desc-learning_cv.svg",
            metric,
        )
        fractions = ", ".join(f"{100 * f:.0f}%" for f in sorted(learning["fraction"].unique()) if f < 1)
        figures.append(
            {
                "path": path,
                "title": "Learning curve (training size)",
                "caption": f"The primary model refit on {fractions} of each outer fold's training "
                "subjects (whole subjects, nested subsets"
                + ("" if metric == "mae" else ", stratified by class")
                + ") and scored on the fold's unchanged test subjects; 100% is the fold's own fit. Faint "
                "lines are single folds, the band is the mean +- 1 SD over folds and repeats. A curve "
                "still rising at the right says more patients would help; a flat one, that this kind "
                "of data gives this model no more.",
                "wide": False,
            }
        )
    size = summary.get("sample_size") or {}
    if size.get("curve"):
        path = _draw("sample size", rl.plot_sample_size, notes, size, fig_dir / "desc-samplesize_cv.svg")
        figures.append(
            {
                "path": path,
                "title": "Minimum sample size (Riley et al. 2020)",
                "caption": "Patients needed to develop a prediction model of severe vs mild-to-moderate "
                "impairment (Riley et al. 2020: expected shrinkage >= 0.9, optimism in Nagelkerke's R² "
                "<= 0.05, overall risk within +-0.05) at this cohort's prevalence, with the primary "
                f"model's {size['n_parameters']} parcels as candidate parameters, by the C statistic "
                "one anticipates; the dashed line is this cohort's size, the diamond the n at the "
                "primary model's observed out-of-fold AUC. A cohort below the curve can still evaluate "
                "a model honestly by cross-validation; it is too small to develop one that is not "
                "overfit.",
                "wide": False,
            }
        )
    return figures


def cv_figures(group_dir: Path, fig_dir: Path, summary: dict, notes: list) -> list[dict]:
    """ROC, confusion, calibration (or, for regression, predicted vs true), loss curves, permutation."""
    figures = []
    regression = summary.get("target") == "regression"
    preds = None if regression else _read_tsv(group_dir / "cv_predictions.tsv")
    if regression:
        figures += _regression_scatter(group_dir, fig_dir, summary, notes)
    elif preds is not None and not preds.empty:
        drawn = [model_label(m) for m in rl.roc_models(preds)]
        listed = f"{len(drawn)} model{'s' if len(drawn) != 1 else ''} ({', '.join(drawn)})"
        for name, func, title, caption, wide in (
            (
                "roc",
                rl.plot_roc,
                "ROC curves",
                f"ROC curves of the out-of-fold predictions of {listed}, one line per CV repeat; each "
                "model has its own colour and dash, and the legend gives its AUC (mean over repeats, so it "
                "can differ from the pooled AUC of the table). Curves of an AUC of 1 run along the left "
                "and top axes.",
                False,
            ),
            (
                "calibration",
                rl.plot_calibration,
                "Calibration",
                "Calibration (reliability) of the out-of-fold probabilities, one line per CV repeat "
                "(not averaged over repeats first): a well-calibrated model follows the diagonal. "
                + calibration_note(summary),
                False,
            ),
            (
                "confusion",
                rl.plot_confusion,
                "Confusion matrices",
                "Subject-level confusion matrices, one per model: each subject's probability of "
                "'severe' averaged over repeats, cut at 0.5.",
                True,
            ),
        ):
            path = _draw(name, func, notes, preds, fig_dir / f"desc-{name}_cv.svg")
            figures.append({"path": path, "title": title, "caption": caption, "wide": wide})
    else:
        notes.append(
            "No cross-validated predictions (group/cv_predictions.tsv): ROC, confusion and "
            "calibration figures are not shown."
        )
    curves = _read_tsv(group_dir / "training_curves.tsv")
    if curves is not None and not curves.empty:
        path = _draw("loss curves", rl.plot_loss_curves, notes, curves, fig_dir / "desc-loss_cv.svg")
        figures.append(
            {
                "path": path,
                "title": "Loss curves",
                "caption": "Learning curves: training and validation loss per epoch of the CNN in every "
                "fold. The validation subjects are whole subjects held out of each fold's training "
                "subjects for early stopping; no test subject of the fold is seen. A validation loss "
                "that never falls below its first epochs means the network learned nothing that "
                "generalises to new subjects.",
                "wide": False,
            }
        )
    figures += curve_figures(group_dir, fig_dir, summary, notes)
    perm = summary.get("permutation")
    metric, null, observed = null_scores(perm)
    if perm and null:
        model = perm.get("model", CNN_MODEL)
        if observed is None:
            observed = summary.get("models", {}).get(model, {}).get(metric, {}).get("mean")
        path = _draw(
            "permutation",
            rl.plot_permutation,
            notes,
            null,
            observed,
            perm.get("p_value"),
            fig_dir / "desc-permutation_cv.svg",
            metric,
        )
        figures.append(
            {
                "path": path,
                "title": f"Permutation test ({model_label(model)})",
                "caption": ("MAE" if metric == "mae" else "Balanced accuracy")
                + " of the whole cross-validation (as many repeats as the observed score) on permuted "
                "labels, against the observed one; every model's p-value is in the text above.",
                "wide": False,
            }
        )
    return figures


def map_vmax(maps: dict) -> dict:
    """Colour scales: one shared by the class means, one by the saliency maps, one for the difference."""
    from workflows.utils.images import as_image

    def top(imgs: Iterable[str | Path]) -> float:
        vals = np.concatenate(
            [np.abs(np.asarray(as_image(i).dataobj, dtype=np.float32)).ravel() for i in imgs]
        )
        vals = vals[np.isfinite(vals) & (vals > 0)]
        return float(np.percentile(vals, 99)) if vals.size else 1.0

    out = {}
    for kind in ("mean dFC SD", "saliency"):
        same = [p for t, p in maps.items() if kind in t]
        if same:
            shared = top(same)
            out.update({t: shared for t in maps if kind in t})
    out.update({t: top([p]) for t, p in maps.items() if t not in out})
    return {t: float(f"{v:.2g}") for t, v in out.items()}


#: Permutation p-value below which the CNN's saliency region table is shown.
SALIENCY_ALPHA = 0.05


def saliency_withheld(summary: dict | None, model: str = CNN_MODEL) -> str | None:
    """Why a model's region table is withheld (None: shown): only a model that beats chance is explained.

    A model at chance, or one trained on permuted labels, ranks noise regions with the same confidence,
    so the table is shown only when the model's own permutation test gives p < :data:`SALIENCY_ALPHA`
    (the CNN's saliency by default; the primary model's activation patterns with ``model``).
    """
    if not summary:
        return "the cross-validation summary (group/cv_summary.json) was not found"
    perm = ((summary.get("permutation") or {}).get("models") or {}).get(model) or {}
    p = perm.get("p_value")
    noun = MODELS[model].noun if model in MODELS else model
    if p is None:
        return (
            f"{noun}'s permutation test was not run (--n-permutations"
            + (" with --permute-cnn" if model == CNN_MODEL else "")
            + "), so nothing shows it beats chance; a model at chance ranks noise regions with the same "
            "confidence"
        )
    if p >= SALIENCY_ALPHA:
        return (
            f"{noun} does not beat chance (permutation p = {p:.3g} >= {SALIENCY_ALPHA:g}); a model at "
            "chance ranks noise regions with the same confidence"
        )
    return None


def region_note(sidecar: Mapping[str, Any] | None) -> str:
    """The region table's stability and null in words, from its JSON sidecar (empty without one)."""
    stability, null = (sidecar or {}).get("Stability") or {}, (sidecar or {}).get("Null") or {}
    if not stability:
        return ""
    rho = stability.get("FoldProfileSpearman")
    text = (
        f"Stability over {stability.get('FoldModels')} fold models (folds x repeats, each on its own "
        f"held-out subjects): fold_top_share is the share that rank the region among the top "
        f"{stability.get('TopK')}; the whole region profile correlates between fold models at mean "
        "Spearman rho " + ("n/a" if rho is None else f"{rho:.2f}") + ". "
    )
    if "Null" not in (sidecar or {}):  # the parcel model's patterns: stability only
        return text.strip()
    if not null.get("Draws"):
        return text + "No permuted-label null (the CNN was not permuted): null_p is n/a."
    return text + (
        f"Null: {null['Draws']} permuted-label CNNs explained their own held-out subjects; null_p_fwe is "
        f"corrected over every region; stable_above_null is yes when fold_top_share >= "
        f"{stability.get('StableShare')} and null_p_fwe < {null.get('Alpha')}."
    )


def write_group_report(
    config: RunConfig, subjects: Iterable[CohortSubject], excluded: dict[str, str]
) -> Path:
    """Write ``config.output_dir/group.html`` from the group outputs and return its path.

    ``subjects`` are the ``GroupSubject`` records that entered the group level; ``excluded`` maps labels
    to the reason they were left out. Also writes ``logs/CITATION.md``/``.html`` for the group run.
    """
    out_dir = Path(config.output_dir)
    group_dir = out_dir / "group"
    fig_dir = group_dir / "figures"
    notes: list[str] = []
    summary_path = group_dir / "cv_summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    rows = cohort_rows(
        _read_tsv(group_dir / "cohort.tsv"), subjects, excluded, float(config.group.severe_threshold)
    )
    metrics = {
        model: {k: rec for k, rec in v.items() if isinstance(rec, dict) and "mean" in rec}
        for model, v in summary.get("models", {}).items()
        if isinstance(v, dict)
    }
    figures = cv_figures(group_dir, fig_dir, summary, notes)
    regression = summary.get("target") == "regression"

    stat = (summary.get("map") or {}).get("stat", "dfcsd")
    maps = {t: group_dir / f for t, f in map_files(stat).items() if (group_dir / f).is_file()}
    maps_figure = None
    if maps:
        maps_figure = _draw(
            "group maps",
            rl.plot_map_mosaics,
            notes,
            maps,
            fig_dir / "desc-groupmaps_mosaic.svg",
            map_vmax(maps),
        )
    else:
        notes.append("No group maps were found in group/.")
    aligned = (
        "Lesion-aligned: right-lesion maps were mirrored, so the left hemisphere is the lesioned one. "
        if config.group.align_lesion
        else "Not lesion-aligned (--no-align-lesion). "
    )
    maps_caption = (
        aligned + "Rows: mean dFC variability (SD of windowed Fisher z) of each class on one "
        "shared colour scale, their difference (severe - mild), and the CNN saliency on held-out "
        "subjects (each cross-validation fold's CNN on its own test subjects; signed integrated "
        "gradients of the severe log-odds from the training-mean map, red pushes toward severe, blue "
        "toward mild-to-moderate) averaged over the severe and over the mild-to-moderate subjects, on "
        "one shared scale; scales in each row's title (99th percentile of |value|). On a diverging "
        "scale, values within 5% of 0 are left clear so that the MNI152 template shows through."
    )

    regions = _read_tsv(group_dir / SALIENCY_REGIONS)
    patterns = _read_tsv(group_dir / PATTERN_REGIONS)
    md = ""
    try:
        md = methods_text(with_participant_options(config), software_versions())
        write_citation(out_dir / "logs", md)
    except Exception:  # the methods text must never fail the report
        LOGGER.exception("The methods boilerplate could not be written")
        notes.append("The methods text could not be written (see the log).")
    page = render_page(
        "group.html",
        title="strokefc group report",
        notes=notes,
        result_text=result_sentences(summary),
        result=[] if regression else result_rows(summary),
        about=about_rows(config),
        cohort=rows,
        cohort_columns=list(COHORT_COLUMNS)
        + ([SITE_COLUMN] if any(r.get(SITE_COLUMN) for r in rows) else []),
        site_classes=class_rows(summary, rows),
        site_text=site_sentences(summary),
        site_table=site_table(summary),
        cohort_summary=cohort_summary(rows),
        cv_text=cv_sentence(summary),
        cv_warnings=[str(w.get("message")) for w in summary.get("warnings") or []],
        metrics=metrics,
        metric_models=ordered(metrics),
        metric_names=[m for m in METRICS if any(m in v for v in metrics.values())]
        + sorted({m for v in metrics.values() for m in v if m not in METRICS}),
        metric_labels=METRICS,
        model_labels={m: model_label(m, "regression" if regression else "classification") for m in metrics},
        comparison=[] if regression else comparison_rows(summary),
        comparison_text=(regression_sentences(summary) if regression else comparison_sentences(summary))
        + clinical_and_conformal_sentences(summary)
        + timescale_sentences(summary),
        sensitivity=sensitivity_sentences(summary),
        usefulness=curve_sentences(summary),
        regression=regression_rows(summary) if regression else [],
        cv_figures=figures,
        maps_figure=maps_figure,
        maps_caption=maps_caption,
        regions=_records(regions) if regions is not None else [],
        regions_withheld=saliency_withheld(summary),
        regions_note=region_note(_read_json(group_dir / SALIENCY_REGIONS.replace(".tsv", ".json"))),
        patterns=_records(patterns) if patterns is not None else [],
        patterns_withheld=saliency_withheld(summary, PRIMARY_MODEL),
        patterns_note=region_note(_read_json(group_dir / PATTERN_REGIONS.replace(".tsv", ".json"))),
        pattern_columns=list(patterns.columns) if patterns is not None else [],
        primary_noun=MODELS[PRIMARY_MODEL].noun,
        region_columns=list(regions.columns) if regions is not None else [],
        methods_html=markdown_to_html(md) if md else "",
    )
    return atomic_write_text(out_dir / "group.html", page)
