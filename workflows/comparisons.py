"""What the group level may claim: "A beats B" only with the evidence for it, and what to warn about.

Under the null, models do not sit at chance together: a model with more features anti-learns further
below 0.5 than a sparse one, so a paired difference can exclude 0 while both models are at chance (the
science review's m3). :func:`paired_verdict` therefore says one model *beats* another only when

1. the paired subject-level bootstrap interval of their difference (the same subjects drawn for both,
   :func:`workflows.stats.bootstrap_comparison`) excludes 0, and
2. the better model passes its own permutation test (p < 0.05, :func:`above_chance`).

Otherwise it says the models do not differ, that the better one is not above chance, or that the
better one has no permutation test (then its bootstrap interval is shown, which is not a test: on 40
null cohorts of 40 subjects, 20 against 320 noise features, a bootstrap-only gate still let 4 "beats"
through, against 7 with the difference interval alone). Both models' intervals travel with the
verdict. :func:`cv_warnings` lists what a reader of ``cv_summary.json`` and the report must see
first (model at chance, too few subjects per class, the CNN below its controls, a confound control
above chance, no permutation test).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeGuard

from workflows.models import CNN_MODEL, LABELS, MODELS, PRIMARY_MODEL, QUALITY, REGRESSION_REFERENCES
from workflows.stats import COMPARE_METRIC, LOWER_IS_BETTER

#: Permutation p below which a model is called above chance.
ALPHA = 0.05
#: Fewest subjects per class (classification) below which the summary warns.
MIN_SUBJECTS_PER_CLASS = 10
#: Fewest subjects (regression) below which the summary warns.
MIN_SUBJECTS_REGRESSION = 20
#: The reference a regression model must beat to be above chance.
CHANCE_REFERENCE = REGRESSION_REFERENCES[0]
#: The control every dynamic map is compared with: when it wins, the effect is static.
STATIC_CONTROL = "parcel_fc"
#: Group maps (``--map``) that measure no dynamics: a primary model on them cannot tell dynamic from static.
STATIC_MAPS = ("fc", "dfcmean")


def _finite(interval: Any) -> TypeGuard[Sequence[float]]:
    return (
        isinstance(interval, list | tuple)
        and len(interval) == 2
        and all(v is not None and math.isfinite(float(v)) for v in interval)
    )


def _label(model: str, target: str) -> str:
    return LABELS[target].get(model, model)


def above_chance(
    bootstrap: Mapping[str, Any], permutation: Mapping[str, Any] | None, model: str, target: str
) -> dict[str, Any]:
    """Is ``model`` above chance? ``{"above_chance": True/False/None, "tested": bool, "evidence": words}``.

    The model's own permutation p decides when it was permuted (``tested``); otherwise the subject
    bootstrap describes it (not a test): the balanced-accuracy interval above 0.5, or (regression) the
    interval of its MAE difference from the training-mean reference below 0. None: nothing to decide
    on (the reference itself, or no record).
    """
    p = (((permutation or {}).get("models") or {}).get(model) or {}).get("p_value")
    if p is not None and math.isfinite(float(p)):
        return {
            "above_chance": float(p) < ALPHA,
            "tested": True,
            "evidence": f"permutation p = {float(p):.3g}",
        }
    record = bootstrap.get(model) or {}
    if target == "regression":
        diff = (record.get(f"difference_from_{CHANCE_REFERENCE}") or {}).get("mae") or {}
        if model == CHANCE_REFERENCE or not _finite(diff.get("ci95")):
            return {
                "above_chance": None,
                "tested": False,
                "evidence": "no permutation test and no reference interval",
            }
        lo, hi = diff["ci95"]
        return {
            "above_chance": hi < 0,
            "tested": False,
            "evidence": f"MAE difference from the training mean {lo:+.1f} to {hi:+.1f} (bootstrap; "
            "no permutation test)",
        }
    ba = (record.get("balanced_accuracy") or {}).get("ci95")
    if not _finite(ba):
        return {"above_chance": None, "tested": False, "evidence": "no bootstrap interval"}
    return {
        "above_chance": ba[0] > 0.5,
        "tested": False,
        "evidence": f"balanced accuracy interval {ba[0]:.2f} to {ba[1]:.2f} (bootstrap; no permutation test)",
    }


def paired_verdict(
    bootstrap: Mapping[str, Any],
    permutation: Mapping[str, Any] | None,
    model: str,
    reference: str,
    target: str,
) -> dict[str, Any] | None:
    """The claim ``model`` against ``reference`` allows (see the module docstring), or None when the
    summary holds no paired difference of the two.

    Returns ``model``, ``reference``, ``metric``, ``difference`` (model minus reference) with its
    ``ci95``, both models' values and intervals, ``winner`` (None: the interval holds 0),
    ``winner_above_chance`` and ``verdict``: ``"model_better"``, ``"reference_better"``,
    ``"no_difference"``, ``"winner_at_chance"`` (the difference excludes 0 but the better model is
    not above chance) or ``"untested"`` (the better model has no permutation test): the last two are
    no claim; and ``sentence`` (the words the report uses).
    """
    metric = COMPARE_METRIC[target]
    diff = ((bootstrap.get(model) or {}).get(f"difference_from_{reference}") or {}).get(metric)
    if not diff or not _finite(diff.get("ci95")):
        return None
    lo, hi = (float(v) for v in diff["ci95"])
    lower = metric in LOWER_IS_BETTER
    model_better, reference_better = (hi < 0, lo > 0) if lower else (lo > 0, hi < 0)
    winner = model if model_better else reference if reference_better else None
    if winner is not None and target == "regression" and winner == CHANCE_REFERENCE:
        # the training mean is the chance level: a model worse than it is worse than chance
        chance: dict[str, Any] | None = {
            "above_chance": True,
            "tested": True,
            "evidence": "the chance level itself",
        }
    else:
        chance = above_chance(bootstrap, permutation, winner, target) if winner else None
    verdict = (
        "no_difference"
        if winner is None
        else "winner_at_chance"
        if not (chance or {}).get("above_chance")
        else "untested"
        if not (chance or {}).get("tested")
        else "model_better"
        if winner == model
        else "reference_better"
    )

    def value(name: str) -> dict[str, Any]:
        rec = (bootstrap.get(name) or {}).get(metric) or {}
        return {"value": rec.get("value"), "ci95": rec.get("ci95")}

    out = {
        "model": model,
        "reference": reference,
        "metric": metric,
        "difference": diff.get("value"),
        "ci95": [lo, hi],
        "model_score": value(model),
        "reference_score": value(reference),
        "winner": winner,
        "winner_above_chance": (chance or {}).get("above_chance"),
        "verdict": verdict,
    }
    out["sentence"] = verdict_sentence(out, target, chance)
    return out


def _score_text(score: Mapping[str, Any], metric: str) -> str:
    if score.get("value") is None:
        return "n/a"
    digits = ".1f" if metric in LOWER_IS_BETTER else ".2f"
    ci = score.get("ci95")
    interval = f" ({ci[0]:{digits}} to {ci[1]:{digits}})" if _finite(ci) else ""
    return f"{score['value']:{digits}}{interval}"


def verdict_sentence(record: Mapping[str, Any], target: str, chance: Mapping[str, Any] | None) -> str:
    """One sentence for a :func:`paired_verdict` record, with both models' scores and intervals."""
    metric, model, reference = record["metric"], record["model"], record["reference"]
    names = {model: _label(model, target), reference: _label(reference, target)}
    winner = record["winner"]
    # The scores and the paired difference in the sentence's own order: the winner's first (the
    # record's difference is model minus reference, so it turns sign when the reference wins).
    first, flip = (reference, -1.0) if winner == reference else (model, 1.0)
    second = model if first == reference else reference
    lo, hi = sorted(flip * float(v) for v in record["ci95"])
    digits = ".1f" if metric in LOWER_IS_BETTER else ".2f"
    score = {model: record["model_score"], reference: record["reference_score"]}
    scores = (
        f"{metric.replace('_', ' ')} {_score_text(score[first], metric)} against "
        f"{_score_text(score[second], metric)}; paired difference {lo:+{digits}} to "
        f"{hi:+{digits}} (95% subject bootstrap)"
    )
    if winner is None:
        return f"{names[model]} and {names[reference]} do not differ ({scores})."
    loser = reference if winner == model else model
    if record["verdict"] == "winner_at_chance":
        return (
            f"{names[winner]} scores better than {names[loser]} ({scores}), but {names[winner]} is not "
            f"above chance itself ({(chance or {}).get('evidence', 'no evidence')}): no claim (at chance, "
            "models with more features fall further below chance)."
        )
    if record["verdict"] == "untested":
        return (
            f"{names[winner]} scores better than {names[loser]} ({scores}), but no permutation test "
            f"shows {names[winner]} above chance ({(chance or {}).get('evidence', 'no evidence')}; run "
            "--n-permutations): no claim."
        )
    return f"{names[winner]} beats {names[loser]} ({scores}; {names[winner]}: {chance['evidence']})."  # type: ignore[index]


def comparisons(summary: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every paired verdict the summary allows: each model against the primary (classification), or
    against each regression reference (regression)."""
    target = str(summary.get("target") or "classification")
    bootstrap = summary.get("bootstrap") or {}
    permutation = summary.get("permutation")
    primary = str(summary.get("primary_model") or PRIMARY_MODEL)
    references = [r for r in REGRESSION_REFERENCES if r in bootstrap] if target == "regression" else [primary]
    out = []
    for model in bootstrap:
        for reference in references:
            if model == reference:
                continue
            record = paired_verdict(bootstrap, permutation, model, reference, target)
            if record:
                out.append(record)
    return out


def _warning(code: str, message: str, model: str | None = None) -> dict[str, Any]:
    return {"code": code, "model": model, "message": message}


def cv_warnings(
    summary: Mapping[str, Any], subjects_per_class: Mapping[str, int], exported: str | None = None
) -> list[dict[str, Any]]:
    """What a reader must see before the numbers: ``[{"code", "model", "message"}]``.

    ``model_at_chance`` (the primary or the exported model), ``few_subjects`` (a class with fewer
    than :data:`MIN_SUBJECTS_PER_CLASS` subjects, or a regression on fewer than
    :data:`MIN_SUBJECTS_REGRESSION`), ``cnn_below_controls`` (the CNN's pooled score worse than the
    primary model's or a control's), ``confounds_above_chance`` (the class or score follows from
    motion, quality and lesion volume alone), ``control_beats_primary`` and ``no_permutation_test``.
    """
    target = str(summary.get("target") or "classification")
    metric = COMPARE_METRIC[target]
    lower = metric in LOWER_IS_BETTER
    bootstrap = summary.get("bootstrap") or {}
    permutation = summary.get("permutation")
    primary = str(summary.get("primary_model") or PRIMARY_MODEL)
    out: list[dict[str, Any]] = []
    for model in dict.fromkeys([primary, exported or primary]):
        if model not in bootstrap:
            continue
        chance = above_chance(bootstrap, permutation, model, target)
        if chance["above_chance"] is False:
            out.append(
                _warning(
                    "model_at_chance",
                    f"{_label(model, target)}"
                    + (" (the exported model)" if model == exported else "")
                    + f" is not above chance ({chance['evidence']}): its predictions carry no "
                    "demonstrated information about the outcome.",
                    model,
                )
            )
    if target == "regression":
        n = sum(subjects_per_class.values()) if subjects_per_class else 0
        if n < MIN_SUBJECTS_REGRESSION:
            out.append(
                _warning(
                    "few_subjects",
                    f"{n} subjects (fewer than {MIN_SUBJECTS_REGRESSION}): the MAE and R² intervals "
                    "are wide and the chosen ridge penalty unstable.",
                )
            )
    else:
        small = {c: n for c, n in subjects_per_class.items() if n < MIN_SUBJECTS_PER_CLASS}
        if small:
            out.append(
                _warning(
                    "few_subjects",
                    ", ".join(f"{n} {c}" for c, n in small.items())
                    + f" subject(s) (fewer than {MIN_SUBJECTS_PER_CLASS} per class): intervals are "
                    "wide and a model at chance can look better or worse than it is.",
                )
            )

    def score(name: str) -> float | None:
        value = ((bootstrap.get(name) or {}).get(metric) or {}).get("value")
        return float(value) if value is not None and math.isfinite(float(value)) else None

    cnn = score(CNN_MODEL)
    if cnn is not None:
        rivals = [primary] + [m for m, s in MODELS.items() if s.role == "control"]
        better = [
            m
            for m in rivals
            if m != CNN_MODEL and (s := score(m)) is not None and (s < cnn if lower else s > cnn)
        ]
        if better:
            out.append(
                _warning(
                    "cnn_below_controls",
                    f"the CNN ({metric.replace('_', ' ')} {cnn:.2f}) scores worse than "
                    + ", ".join(f"{_label(m, target)} ({score(m):.2f})" for m in better)
                    + ": it shows nothing the simpler models do not.",
                    CNN_MODEL,
                )
            )
    if QUALITY in bootstrap and above_chance(bootstrap, permutation, QUALITY, target)["above_chance"]:
        out.append(
            _warning(
                "confounds_above_chance",
                f"{_label(QUALITY, target)} is above chance "
                f"({above_chance(bootstrap, permutation, QUALITY, target)['evidence']}): the outcome "
                "follows from motion, quality measures or lesion volume; read the map models against it.",
                QUALITY,
            )
        )
    for control in [m for m, s in MODELS.items() if s.role == "control" and m in bootstrap]:
        # classification: every control carries its difference from the primary; regression: the
        # primary carries its difference from the confound control (a reference)
        record = (
            paired_verdict(bootstrap, permutation, primary, control, target)
            if target == "regression"
            else paired_verdict(bootstrap, permutation, control, primary, target)
        )
        if record and record["winner"] == control and record["verdict"] != "winner_at_chance":
            # a control ahead of the primary is worth a warning even before a permutation test
            out.append(_warning("control_beats_primary", record["sentence"], control))
    if not permutation:
        out.append(
            _warning(
                "no_permutation_test",
                "no permutation test was run (--n-permutations): 'above chance' rests on the subject "
                "bootstrap interval, which is not a test.",
            )
        )
    return out


def _static_record(
    bootstrap: Mapping[str, Any], permutation: Mapping[str, Any] | None, primary: str, target: str
) -> dict[str, Any] | None:
    """The paired verdict of the primary model against the static-FC control, whichever way the summary
    stored the difference (on the control for classification, on the primary with several timescales)."""
    return paired_verdict(bootstrap, permutation, primary, STATIC_CONTROL, target) or paired_verdict(
        bootstrap, permutation, STATIC_CONTROL, primary, target
    )


def effect_kind(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Is the effect dynamic or static? The primary model (on a dynamic map) against the static-FC control.

    The same gate as every claim (:func:`paired_verdict`): the effect is ``"dynamic"`` when the primary
    model beats the static-FC control on the same folds (paired subject-bootstrap interval of the
    difference excludes 0, and the primary passes its own permutation test), ``"static"`` when the
    control beats the primary the same way. Anything else is no claim (``kind`` None), with the reason:
    ``"at_chance"`` (neither model shown above chance, or the better one not), ``"no_difference"`` (the
    two do not differ: the effect may be both, or the cohort too small to tell), ``"untested"`` (no
    permutation test of the better model), ``"static_map"`` (``--map`` fc or dfcmean: the primary reads no
    dynamics), ``"no_control"`` (the static-FC control did not run) or ``"not_compared"`` (no paired
    difference of the two in the summary). Returns ``{"kind", "reason",
    "sentence"}``: the sentence is what the report's Result section says.
    """
    target = str(summary.get("target") or "classification")
    bootstrap = summary.get("bootstrap") or {}
    permutation = summary.get("permutation")
    primary = str(summary.get("primary_model") or PRIMARY_MODEL)
    stat = str((summary.get("map") or {}).get("stat") or "dfcsd")

    def answer(kind: str | None, reason: str, sentence: str) -> dict[str, Any]:
        return {"kind": kind, "reason": reason, "sentence": sentence}

    if stat in STATIC_MAPS:
        return answer(
            None,
            "static_map",
            f"Dynamic or static: not asked. The models read the stat-{stat} maps, which measure no "
            "dynamics (run the group level with --map dfcsd or dfcexcess to compare dynamics with static "
            "FC).",
        )
    record = _static_record(bootstrap, permutation, primary, target) if primary in bootstrap else None
    if record is None and STATIC_CONTROL in bootstrap:
        return answer(
            None,
            "not_compared",
            "Dynamic or static: no claim. This summary holds no paired comparison of the primary model "
            "with the static-FC control.",
        )
    if record is None:
        return answer(
            None,
            "no_control",
            "Dynamic or static: no claim. The static-FC control did not run (it needs the stat-fc maps of "
            "the participant level), so these data cannot tell a dynamic effect from a static one.",
        )
    verdict, winner = record["verdict"], record["winner"]
    if verdict in ("model_better", "reference_better"):
        if winner == primary:
            return answer(
                "dynamic",
                "dynamic",
                "The effect is dynamic: " + record["sentence"] + " The time-varying coupling tells the "
                "groups apart beyond its static strength.",
            )
        return answer(
            "static",
            "static",
            "The effect is static: " + record["sentence"] + " The strength of static coupling tells the "
            "groups apart; these data do not show that its variation over time adds to it.",
        )
    if verdict == "untested":
        return answer(None, "untested", "Dynamic or static: no claim. " + record["sentence"])
    chances = [
        above_chance(bootstrap, permutation, m, target)["above_chance"] for m in (primary, STATIC_CONTROL)
    ]
    if verdict == "winner_at_chance" or not any(chances):
        lead = (
            "the better of the two is not shown above chance"
            if any(chances)
            else "neither the dFC model nor the static-FC control is shown above chance"
        )
        return answer(None, "at_chance", f"Dynamic or static: no claim, since {lead}. " + record["sentence"])
    return answer(
        None,
        "no_difference",
        "Dynamic or static: no claim. " + record["sentence"] + " The effect may be both dynamic and "
        "static, or the cohort too small to tell them apart.",
    )
