"""ComBat harmonisation of parcel features across sites, fitted inside a training fold only.

:class:`ComBat` is a scikit-learn transformer: ``fit`` on the training subjects of a fold estimates the
site effects (location and scale per feature and site, shrunk with empirical Bayes: Johnson, Li &
Rabinovic 2007, Biostatistics 8:118; for imaging: Fortin et al. 2017 NeuroImage 161:149 and 2018
NeuroImage 167:104), ``transform`` removes them from any subject with the training estimates.

Why not a package: neuroHarmonize pins numpy < 2 and neuroCombat (last release 2021) uses ``np.int``,
removed from numpy, and neither is a scikit-learn transformer, which is what keeps the fit inside the
folds. The algorithm is short; it is written here and tested on data with known site effects.

Covariates to protect (kept in the data, not removed with the site) must be known for test subjects
too, such as age and sex. The outcome (the impairment class or score) is unknown for a test subject:
protecting it with all subjects' labels is a leak. Inside a fold it may be protected with the
training subjects' labels only, test subjects being transformed without theirs
(:func:`harmonize_fold`, which the group level uses).

A site absent from the training fold (leave-site-out validation) has no training estimate; ``transform``
then estimates its location and scale from the features of that site's subjects as given (no labels),
standardised with the training fold's feature means, covariate effects and pooled variance. That needs
at least :data:`MIN_NEW_SITE_SUBJECTS` subjects of the new site.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

LOGGER = logging.getLogger("strokefc.group")

#: Subjects of a site unseen in training needed to estimate its site effect at transform time.
MIN_NEW_SITE_SUBJECTS = 3


def _eb_adjust(z: np.ndarray, max_iter: int = 1000, tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """Empirical-Bayes location (gamma*) and scale (delta*^2) of one site's standardised data (n, p)."""
    n = z.shape[0]
    gamma_hat = z.mean(axis=0)
    delta_hat = z.var(axis=0, ddof=1) if n > 1 else np.ones(z.shape[1])
    gamma_bar, tau2 = gamma_hat.mean(), gamma_hat.var(ddof=1)
    m, s2 = delta_hat.mean(), delta_hat.var(ddof=1)
    if s2 <= 0 or tau2 <= 0:  # no spread over features to shrink towards: keep the raw estimates
        return gamma_hat, np.maximum(delta_hat, 1e-12)
    a = (2 * s2 + m**2) / s2
    b = (m * s2 + m**3) / s2
    gamma, delta = gamma_hat.copy(), delta_hat.copy()
    for _ in range(max_iter):
        gamma_new = (n * tau2 * gamma_hat + delta * gamma_bar) / (n * tau2 + delta)
        delta_new = (b + 0.5 * ((z - gamma_new) ** 2).sum(axis=0)) / (n / 2 + a - 1)
        change = max(
            np.max(np.abs(gamma_new - gamma) / np.maximum(np.abs(gamma), 1e-12)),
            np.max(np.abs(delta_new - delta) / np.maximum(delta, 1e-12)),
        )
        gamma, delta = gamma_new, delta_new
        if change < tol:
            break
    return gamma, np.maximum(delta, 1e-12)


class ComBat(TransformerMixin, BaseEstimator):
    """Remove additive and multiplicative site effects from features (n_subjects, n_features).

    ``sites`` (n_subjects,) and ``covariates`` (n_subjects, k) or None are passed to ``fit`` and
    ``transform``; features with NaN are not supported (impute first, inside the fold).
    """

    def __init__(self, empirical_bayes: bool = True):
        self.empirical_bayes = empirical_bayes

    def _design(self, covariates: np.ndarray | None, n: int) -> np.ndarray:
        if covariates is None:
            return np.zeros((n, 0))
        cov = np.asarray(covariates, dtype=float).reshape(n, -1)
        return cov - self.covariate_mean_

    def fit(
        self, x: np.ndarray, y: object = None, *, sites: np.ndarray, covariates: np.ndarray | None = None
    ) -> ComBat:
        x = np.asarray(x, dtype=float)
        sites = np.asarray(sites)
        n = x.shape[0]
        self.sites_ = np.unique(sites)
        self.covariate_mean_ = (
            np.zeros(0) if covariates is None else np.asarray(covariates, float).reshape(n, -1).mean(axis=0)
        )
        onehot = (sites[:, None] == self.sites_[None, :]).astype(float)
        cov = self._design(covariates, n)
        design = np.hstack([onehot, cov])
        beta, *_ = np.linalg.lstsq(design, x, rcond=None)
        n_sites = self.sites_.size
        weights = onehot.sum(axis=0) / n
        self.grand_mean_ = weights @ beta[:n_sites]  # (p,)
        self.covariate_beta_ = beta[n_sites:]  # (k, p)
        resid = x - design @ beta
        self.pooled_sd_ = np.sqrt(np.maximum((resid**2).mean(axis=0), 1e-12))
        z = self._standardise(x, cov)
        self.gamma_, self.delta2_ = {}, {}
        for site in self.sites_:
            self.gamma_[site], self.delta2_[site] = self._site_effect(z[sites == site])
        return self

    def _standardise(self, x: np.ndarray, cov: np.ndarray) -> np.ndarray:
        return (x - self.grand_mean_ - cov @ self.covariate_beta_) / self.pooled_sd_

    def _site_effect(self, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.empirical_bayes:
            return _eb_adjust(z)
        return z.mean(axis=0), np.maximum(z.var(axis=0, ddof=1), 1e-12)

    def transform(
        self, x: np.ndarray, *, sites: np.ndarray, covariates: np.ndarray | None = None
    ) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        sites = np.asarray(sites)
        cov = self._design(covariates, x.shape[0])
        z = self._standardise(x, cov)
        out = np.empty_like(z)
        for site in np.unique(sites):
            rows = sites == site
            if site in self.gamma_:
                gamma, delta2 = self.gamma_[site], self.delta2_[site]
            elif rows.sum() >= MIN_NEW_SITE_SUBJECTS:
                gamma, delta2 = self._site_effect(z[rows])
            else:
                raise ValueError(
                    f"site {site!r} was not in the training subjects and has {rows.sum()} subject(s) here; "
                    f"ComBat needs at least {MIN_NEW_SITE_SUBJECTS} to estimate a new site's effect"
                )
            out[rows] = (z[rows] - gamma) / np.sqrt(delta2)
        return out * self.pooled_sd_ + self.grand_mean_ + cov @ self.covariate_beta_

    def fit_transform(  # sites are keyword-only, as in fit and transform
        self, x: np.ndarray, y: object = None, *, sites: np.ndarray, covariates: np.ndarray | None = None
    ) -> np.ndarray:
        """``fit`` then ``transform``, with the same ``sites`` and ``covariates``."""
        return self.fit(x, y, sites=sites, covariates=covariates).transform(
            x, sites=sites, covariates=covariates
        )


def harmonize_fold(
    train: np.ndarray,
    test: np.ndarray,
    sites_train: np.ndarray,
    sites_test: np.ndarray,
    protect: np.ndarray | None = None,
    *,
    fitted: list[ComBat] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """ComBat of one fold's features: fitted on the training rows only, applied to both.

    ``train`` (n, p) and ``test`` (m, p) features with their ``sites``. ``protect`` (n,) is the outcome
    of the training rows (class or score), kept in their data as a covariate. Protecting the outcome is
    valid here because only training labels enter the fit: the site effects are then estimated net of
    the class, so a site that recruits more severe patients does not lose its severity signal as a
    "site effect". A test subject's label is unknown, so test rows are transformed with the covariate at
    the training mean (no label: the site's location and scale come from the training estimates, as
    neuroHarmonize's ``applyHarmonizationModel`` applies a stored model). A site absent from the training
    rows is estimated from its own test rows, without labels (see :class:`ComBat`).

    Unknown features (NaN: a lesion-excluded parcel) are set to the training column mean for the fit
    and the transform, and are NaN again in the output, so that the model imputes them as before.
    Test rows of a site that is neither in training nor has :data:`MIN_NEW_SITE_SUBJECTS` rows here
    (an inner split of a small training fold, as calibration makes) are left unharmonised, with a
    warning: the group level checks that an outer fold never needs it.
    ``fitted`` (a list) receives the fitted :class:`ComBat` (tests, and a record of the estimates).
    """
    train, test = np.asarray(train, dtype=float), np.asarray(test, dtype=float)
    with np.errstate(invalid="ignore"):
        counts = np.isfinite(train).sum(axis=0)
        fill = np.where(counts > 0, np.nansum(np.where(np.isfinite(train), train, 0.0), axis=0), 0.0)
        fill = fill / np.maximum(counts, 1)
    model = ComBat()
    covariates = None if protect is None else np.asarray(protect, dtype=float).reshape(-1, 1)
    model.fit(np.where(np.isfinite(train), train, fill), sites=sites_train, covariates=covariates)
    if fitted is not None:
        fitted.append(model)
    no_label = None if protect is None else np.tile(model.covariate_mean_, (len(test), 1))
    out_train = model.transform(
        np.where(np.isfinite(train), train, fill), sites=sites_train, covariates=covariates
    )
    sites_test = np.asarray(sites_test)
    unseen, counts = np.unique(sites_test[~np.isin(sites_test, model.sites_)], return_counts=True)
    left = np.isin(sites_test, unseen[counts < MIN_NEW_SITE_SUBJECTS])
    out_test = np.where(np.isfinite(test), test, fill)
    if left.any():
        LOGGER.warning(
            "ComBat: %d test row(s) of site(s) %s, unseen in training and too few to estimate, left "
            "unharmonised",
            int(left.sum()),
            ", ".join(map(str, unseen[counts < MIN_NEW_SITE_SUBJECTS])),
        )
    if (~left).any():
        out_test[~left] = model.transform(
            out_test[~left], sites=sites_test[~left], covariates=None if no_label is None else no_label[~left]
        )
    return np.where(np.isfinite(train), out_train, np.nan), np.where(np.isfinite(test), out_test, np.nan)
