"""Sample size (Riley et al. 2020) and decision curves: checked against published values."""

from __future__ import annotations

import numpy as np
import pytest

from workflows.study_design import max_r2cs, minimum_sample_size, net_benefit, r2cs_from_c


def test_riley_worked_example():
    # Riley et al. 2020 (BMJ 368:m441) and the pmsampsize R documentation: binary outcome, prevalence
    # 0.174, 24 candidate parameters, anticipated R2_CS 0.288 -> 623 (shrinkage), 662 (optimism),
    # 221 (overall risk); 662 patients, 116 events, 4.8 events per parameter.
    out = minimum_sample_size(0.174, 24, r2_cs=0.288)
    assert (out["n_shrinkage"], out["n_optimism"], out["n_overall_risk"]) == (623, 662, 221)
    assert out["n"] == 662
    assert out["events"] == 116
    assert out["events_per_parameter"] == pytest.approx(4.8, abs=0.05)
    assert max_r2cs(0.174) == pytest.approx(0.603, abs=1e-3)


def test_r2cs_from_c_is_the_r2_of_data_with_that_c():
    # independent check: draw data whose linear predictor has the given C, measure its C with
    # scikit-learn and its Cox-Snell R2 from the fitted log-likelihood; the function must agree.
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(5)
    y = rng.random(100_000) < 0.3
    lp = rng.standard_normal(y.size) + y * np.sqrt(2) * 0.8416  # Phi^-1(0.8) = 0.8416
    assert roc_auc_score(y, lp) == pytest.approx(0.8, abs=0.005)
    fit = LogisticRegression(C=1e6).fit(lp[:, None], y)
    p = fit.predict_proba(lp[:, None])[:, 1]
    log_lik = np.sum(np.where(y, np.log(p), np.log(1 - p)))
    log_lik_null = y.size * (y.mean() * np.log(y.mean()) + (1 - y.mean()) * np.log(1 - y.mean()))
    measured = 1 - np.exp(-2 * (log_lik - log_lik_null) / y.size)
    assert r2cs_from_c(0.8, 0.3, n=100_000) == pytest.approx(measured, abs=0.01)
    assert r2cs_from_c(0.7, 0.3, n=100_000) < measured < r2cs_from_c(0.9, 0.3, n=100_000)
    with pytest.raises(ValueError, match="C statistic"):
        r2cs_from_c(0.4, 0.5)


def test_sample_size_refuses_impossible_inputs():
    with pytest.raises(ValueError, match="R-squared"):
        minimum_sample_size(0.5, 10, r2_cs=0.9)
    with pytest.raises(ValueError, match="prevalence"):
        minimum_sample_size(1.2, 10, r2_cs=0.1)
    with pytest.raises(ValueError, match="anticipated"):
        minimum_sample_size(0.5, 10)


def test_net_benefit_of_a_perfect_and_a_useless_model():
    y = np.array([1] * 30 + [0] * 70)
    t = np.array([0.1, 0.3, 0.5])
    perfect = net_benefit(y, y.astype(float), t)
    assert perfect["model"] == pytest.approx([0.3, 0.3, 0.3])  # every event found, nobody else treated
    assert perfect["treat_all"] == pytest.approx([0.3 - 0.7 / 9, 0.3 - 0.7 * 3 / 7, 0.3 - 0.7])
    assert (perfect["treat_none"] == 0).all()
    constant = net_benefit(y, np.full(100, 0.2), t)
    # a constant risk of 0.2 treats everybody below 0.2 and nobody above: treat-all, then treat-none
    assert constant["model"] == pytest.approx([perfect["treat_all"][0], 0.0, 0.0])
    with pytest.raises(ValueError, match="strictly"):
        net_benefit(y, y, np.array([0.0]))
