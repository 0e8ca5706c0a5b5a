"""How many patients a prediction model needs, and whether its predictions would help a clinician.

Pure functions, no I/O:

- :func:`minimum_sample_size`: Riley et al.'s three criteria for developing a prediction model of a
  binary outcome (Riley et al. 2020, BMJ 368:m441; the ``pmsampsize`` R package, which has no Python
  release, so the formulas are written here and checked against the paper's worked example).
- :func:`r2cs_from_c`: the Cox-Snell R-squared a model with a given C statistic (AUROC) can be expected
  to reach (Riley, Van Calster & Collins 2021, Stat Med 40:859), when no R-squared is known.
- :func:`sample_size_curve`: that minimum over a range of anticipated C statistics, for a cohort's
  prevalence and number of candidate parameters, with the cohort's own size and C (the group report's
  sample-size figure).
- :func:`net_benefit`: decision-curve analysis (Vickers & Elkin 2006, Med Decis Making 26:565).
- :func:`detectable_effect`: the smallest balanced accuracy (or correlation of predicted and true
  UL-FMA) a cohort of this size could show to be above chance: a sensitivity statement for the summary.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import brentq
from scipy.special import expit
from scipy.stats import norm


def _null_log_lik(prevalence: float) -> float:
    """Log-likelihood per patient of the intercept-only model of a binary outcome."""
    phi = prevalence
    return phi * math.log(phi) + (1 - phi) * math.log(1 - phi)


def max_r2cs(prevalence: float) -> float:
    """The largest Cox-Snell R-squared a binary outcome with this prevalence allows."""
    return 1 - math.exp(2 * _null_log_lik(prevalence))


def r2cs_from_c(c_statistic: float, prevalence: float, n: int = 1_000_000, seed: int = 0) -> float:
    """Cox-Snell R-squared expected from a C statistic (Riley et al. 2021's simulation approach).

    A large sample with the given prevalence; the linear predictor is N(0, 1) in non-events and
    N(mu, 1) in events with mu = sqrt(2) * Phi^-1(C), which has exactly that C. A logistic regression of
    the outcome on it gives the likelihood-ratio statistic LR, and R2_CS = 1 - exp(-LR / n).
    """
    if not 0.5 < c_statistic < 1:
        raise ValueError(f"the C statistic must lie between 0.5 and 1, not {c_statistic}")
    rng = np.random.default_rng(seed)
    y = rng.random(n) < prevalence
    lp = rng.standard_normal(n) + y * math.sqrt(2) * norm.ppf(c_statistic)
    beta = np.zeros(2)
    design = np.column_stack([np.ones(n), lp])
    for _ in range(50):  # Newton-Raphson for the two-parameter logistic regression
        p = expit(design @ beta)
        step = np.linalg.solve(design.T @ (design * (p * (1 - p))[:, None]), design.T @ (y - p))
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    p = np.clip(expit(design @ beta), 1e-12, 1 - 1e-12)
    log_lik = float(np.sum(y * np.log(p) + (~y) * np.log(1 - p)))
    log_lik_null = n * _null_log_lik(float(y.mean()))
    return 1 - math.exp(-2 * (log_lik - log_lik_null) / n)


def minimum_sample_size(
    prevalence: float,
    n_parameters: int,
    *,
    r2_cs: float | None = None,
    c_statistic: float | None = None,
    shrinkage: float = 0.9,
    optimism: float = 0.05,
    margin: float = 0.05,
) -> dict[str, float | int]:
    """Riley et al. (2020)'s minimum sample size for a binary-outcome prediction model.

    ``n_parameters`` counts the candidate predictor parameters (for strokefc's parcel models, the
    parcels). Give the anticipated ``r2_cs`` (Cox-Snell) or a ``c_statistic``. Criteria: (1) expected
    uniform shrinkage >= ``shrinkage``; (2) optimism in Nagelkerke's R-squared <= ``optimism``;
    (3) the overall risk estimated within +- ``margin`` (95%). Returns each criterion's n, the
    required n (their maximum), the events it implies and the events per parameter.
    """
    if not 0 < prevalence < 1:
        raise ValueError(f"the prevalence must lie between 0 and 1, not {prevalence}")
    if n_parameters < 1:
        raise ValueError("a model has at least one parameter")
    if r2_cs is None:
        if c_statistic is None:
            raise ValueError("give the anticipated Cox-Snell R-squared or the C statistic")
        r2_cs = r2cs_from_c(c_statistic, prevalence)
    r2_max = max_r2cs(prevalence)
    if not 0 < r2_cs < r2_max:
        raise ValueError(f"the Cox-Snell R-squared must lie between 0 and {r2_max:.3f} at this prevalence")

    def n_for(s: float) -> int:
        return math.ceil(n_parameters / ((s - 1) * math.log(1 - r2_cs / s)))

    n1 = n_for(shrinkage)
    s2 = r2_cs / (r2_cs + optimism * r2_max)
    n2 = n_for(s2)
    n3 = math.ceil((norm.ppf(0.975) / margin) ** 2 * prevalence * (1 - prevalence))
    n = max(n1, n2, n3)
    return {
        "r2_cs": r2_cs,
        "max_r2_cs": r2_max,
        "n_shrinkage": n1,
        "shrinkage_criterion_2": s2,
        "n_optimism": n2,
        "n_overall_risk": n3,
        "n": n,
        "events": math.ceil(n * prevalence),
        "events_per_parameter": n * prevalence / n_parameters,
    }


#: Anticipated C statistics of the sample-size curve of the group report.
SAMPLE_SIZE_C = (0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)
#: Patients simulated to convert each C into a Cox-Snell R-squared for that curve (:func:`r2cs_from_c`;
#: about 1% from the 10^6 default, at a fifth of the time).
SAMPLE_SIZE_SIMULATION = 200_000


def sample_size_curve(
    prevalence: float,
    n_parameters: int,
    n_cohort: int,
    observed_c: float | None = None,
    c_statistics: tuple[float, ...] = SAMPLE_SIZE_C,
    simulation: int = SAMPLE_SIZE_SIMULATION,
) -> dict[str, object]:
    """Riley et al.'s minimum sample size (:func:`minimum_sample_size`) across anticipated C statistics,
    for a cohort of ``n_cohort`` patients with this ``prevalence`` and a model of ``n_parameters``
    candidate parameters, and at the cohort's ``observed_c`` (its model's out-of-fold AUC) when that lies
    strictly between 0.5 and 1. ``statement`` says it in one sentence."""
    curve = []
    for c in c_statistics:
        need = minimum_sample_size(prevalence, n_parameters, r2_cs=r2cs_from_c(c, prevalence, n=simulation))
        curve.append({"c_statistic": float(c), "n": int(need["n"]), "events": int(need["events"])})
    head = (
        f"This cohort has {n_cohort} patients ({100 * prevalence:.0f}% severe); by the criteria of Riley "
        f"et al. (2020), a model with {n_parameters} candidate parameters"
    )
    at_observed = None
    if observed_c is not None and 0.5 < observed_c < 1:
        need = minimum_sample_size(
            prevalence, n_parameters, r2_cs=r2cs_from_c(observed_c, prevalence, n=simulation)
        )
        at_observed = {"n": int(need["n"]), "events": int(need["events"])}
        verdict = "meets" if n_cohort >= need["n"] else "falls short of"
        statement = (
            f"{head} and C = {observed_c:.2f} (the primary model's out-of-fold AUC) needs at least "
            f"{need['n']} patients ({need['events']} severe): this cohort {verdict} it."
        )
    else:
        reference = next(r for r in curve if r["c_statistic"] == max(c_statistics))
        why = (
            "is at chance, so no sample size is defined for it"
            if observed_c is not None and observed_c <= 0.5
            else "is 1, which at this size is more likely luck than a perfect model"
            if observed_c is not None
            else "was not recorded"
        )
        statement = (
            f"{head} and C = {reference['c_statistic']:.2f} needs at least {reference['n']} patients; "
            f"the primary model's out-of-fold AUC {why}."
        )
    return {
        "method": "Riley et al. 2020 (BMJ 368:m441): shrinkage >= 0.9, optimism in Nagelkerke R2 <= 0.05, "
        "overall risk within 0.05; C converted to Cox-Snell R2 as in Riley, Van Calster & Collins 2021",
        "prevalence": float(prevalence),
        "n_parameters": int(n_parameters),
        "n_cohort": int(n_cohort),
        "observed_c": None if observed_c is None else float(observed_c),
        "curve": curve,
        "at_observed_c": at_observed,
        "statement": statement,
    }


def net_benefit(y_true: np.ndarray, risk: np.ndarray, thresholds: np.ndarray) -> dict[str, np.ndarray]:
    """Net benefit of treating patients whose predicted risk is at least each threshold probability.

    NB(t) = TP/n - FP/n * t / (1 - t); "treat all" is the same with every patient treated, "treat none"
    is 0. A model is useful at thresholds where its curve lies above both.
    """
    y = np.asarray(y_true).astype(bool)
    risk = np.asarray(risk, dtype=float)
    t = np.asarray(thresholds, dtype=float)
    if ((t <= 0) | (t >= 1)).any():
        raise ValueError("threshold probabilities must lie strictly between 0 and 1")
    n = y.size
    odds = t / (1 - t)
    treated = risk[None, :] >= t[:, None]
    tp = (treated & y[None, :]).sum(axis=1) / n
    fp = (treated & ~y[None, :]).sum(axis=1) / n
    prevalence = y.mean()
    return {
        "threshold": t,
        "model": tp - fp * odds,
        "treat_all": prevalence - (1 - prevalence) * odds,
        "treat_none": np.zeros_like(t),
    }


def detectable_balanced_accuracy(
    n_severe: int, n_mild: int, alpha: float = 0.05, power: float = 0.8
) -> dict[str, float]:
    """The balanced accuracy a cohort could show to be above 0.5 (one-sided ``alpha``, with ``power``).

    The balanced accuracy of a fixed classifier on ``n_severe`` and ``n_mild`` independent subjects is
    (sensitivity + specificity) / 2, two binomial proportions; with both at ``b`` its variance is
    ``b (1 - b) (1/n_severe + 1/n_mild) / 4`` (normal approximation). ``critical`` is the score that
    rejects chance (b = 0.5); ``detectable`` the true ``b`` exceeding ``critical`` with probability
    ``power``. Cross-validation adds the variance of refitting on different subjects, so both are
    lower bounds: the real thresholds are higher.
    """
    if min(n_severe, n_mild) < 1:
        raise ValueError("both classes need at least one subject")
    inverse = 1.0 / n_severe + 1.0 / n_mild

    def sd(b: float) -> float:
        return math.sqrt(b * (1 - b) * inverse / 4)

    critical = 0.5 + norm.ppf(1 - alpha) * sd(0.5)
    if critical >= 1:
        return {"critical": 1.0, "detectable": 1.0}
    gap = norm.ppf(power)
    detectable = brentq(lambda b: (b - critical) / sd(b) - gap, critical, 1 - 1e-12)
    return {"critical": float(critical), "detectable": float(detectable)}


def detectable_correlation(n_subjects: int, alpha: float = 0.05, power: float = 0.8) -> float:
    """The correlation of predicted and true scores detectable as above 0 (one-sided ``alpha``, with
    ``power``) in ``n_subjects`` independent subjects: Fisher's z, tanh((z_alpha + z_power) /
    sqrt(n - 3)). A lower bound for a cross-validated model, as above."""
    if n_subjects < 4:
        return 1.0
    return float(math.tanh((norm.ppf(1 - alpha) + norm.ppf(power)) / math.sqrt(n_subjects - 3)))


def detectable_effect(
    subjects_per_class: dict[str, int], target: str, alpha: float = 0.05, power: float = 0.8
) -> dict[str, object]:
    """The summary's sensitivity statement: what this many subjects can detect, at best."""
    caveat = (
        "a fixed classifier's binomial variance on independent subjects (normal approximation); "
        "cross-validation adds the variance of refitting, so a cross-validated model needs more"
    )
    if target == "regression":
        n = int(sum(subjects_per_class.values()))
        r = detectable_correlation(n, alpha, power)
        return {
            "n_subjects": n,
            "alpha_one_sided": alpha,
            "power": power,
            "detectable_pearson_r": round(r, 3),
            "statement": f"With {n} subjects, a model needs a true correlation of predicted and true "
            f"UL-FMA of at least about {r:.2f} to be shown above 0 in {100 * power:.0f}% of studies "
            f"(one-sided alpha {alpha:g}; Fisher's z on independent subjects, a lower bound for a "
            "cross-validated model).",
        }
    severe, mild = (
        int(subjects_per_class.get("severe", 0)),
        int(subjects_per_class.get("mild-to-moderate", 0)),
    )
    if min(severe, mild) < 1:
        return {"statement": "a class has no subject: nothing can be detected"}
    ba = detectable_balanced_accuracy(severe, mild, alpha, power)
    return {
        "subjects_per_class": {"severe": severe, "mild-to-moderate": mild},
        "alpha_one_sided": alpha,
        "power": power,
        "critical_balanced_accuracy": round(ba["critical"], 3),
        "detectable_balanced_accuracy": round(ba["detectable"], 3),
        "assumption": caveat,
        "statement": f"With {severe} severe and {mild} mild-to-moderate subjects, a model needs a true "
        f"balanced accuracy of at least about {ba['detectable']:.2f} to be shown above chance in "
        f"{100 * power:.0f}% of studies (one-sided alpha {alpha:g}; an observed {ba['critical']:.2f} is "
        "the least that rejects chance); lower bounds from " + caveat + ".",
    }
