"""The primary parcel model as plain arrays: fit on every subject, exported, and applied to new subjects.

The cross-validation fits the primary model as a scikit-learn pipeline (:func:`workflows.models.
parcel_fit_predict`: parcel means, standardised, unknown parcels at the training mean, then the nested-CV
logistic regression or ridge). :func:`fit_parcel_model` fits that same pipeline on every labelled
sample and keeps what a prediction needs as arrays (:class:`ParcelLinearModel`): the parcel label
volume on the model grid, the scaler's mean and SD, the coefficients and intercept. They are written
as safetensors with a JSON card (:func:`workflows.model_io.save_arrays`; never pickle), so a prediction
computes the parcel features exactly as training did, from the same label volume and grid.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg import LinAlgWarning
from sklearn.exceptions import ConvergenceWarning

from workflows.models import (
    MIN_PARCEL_VOXELS,
    MOTOR_PRIOR_MODEL,
    PARCEL_ATLAS,
    PARCEL_EXPORTS,
    PRIMARY_MODEL,
    map_pipeline,
    nested_estimator,
    parcel_matrix,
    parcel_means,
)
from workflows.motor_prior import MOTOR_PRIOR_REGIONS, PRIOR_REFERENCES, region_names

#: ``ModelType`` of the parcel model's card.
PARCEL_TYPE = "parcel_linear"
#: The arrays of the weights file.
ARRAYS = ("parcels", "parcel_ids", "mean", "scale", "coef", "intercept")


@dataclass(frozen=True)
class ParcelLinearModel:
    """A linear model on parcel means of a map on the model grid.

    ``parcels``: integer label volume on the grid (0 = not a feature); ``parcel_ids``: the features'
    parcels, in order; ``mean``/``scale``: the training standardisation; ``coef``/``intercept``: the
    linear model on standardised features; ``target``: ``classification`` (the output is the
    probability of severe, a logistic link) or ``regression`` (the predicted UL-FMA score).
    """

    parcels: np.ndarray
    parcel_ids: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: float
    target: str = "classification"

    def features(self, x: np.ndarray) -> np.ndarray:
        """Parcel means (n, parcels) of samples ``x`` (n, X, Y, Z) on the grid, over finite voxels."""
        operator, ids = parcel_matrix(self.parcels, min_voxels=1)
        if not np.array_equal(ids, self.parcel_ids):
            raise ValueError("the parcel volume does not hold the model's parcels")
        return parcel_means(x, operator)

    def decision(self, features: np.ndarray) -> np.ndarray:
        """Linear score of parcel features; unknown (NaN) features at the training mean (0 once scaled)."""
        z = (np.asarray(features, float) - self.mean) / self.scale
        z = np.where(np.isfinite(z), z, 0.0)
        return z @ self.coef + self.intercept

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """The probability of severe (classification) or the predicted score, from parcel features."""
        d = self.decision(features)
        return d if self.target == "regression" else 1.0 / (1.0 + np.exp(-d))

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The probability of severe (classification) or the predicted score of samples ``x``."""
        return self.predict_features(self.features(x))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The arrays of the weights file (:data:`ARRAYS`)."""
        return {
            "parcels": self.parcels.astype(np.int32),
            "parcel_ids": self.parcel_ids.astype(np.int64),
            "mean": self.mean.astype(np.float64),
            "scale": self.scale.astype(np.float64),
            "coef": self.coef.astype(np.float64),
            "intercept": np.array([self.intercept], np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], target: str) -> ParcelLinearModel:
        """Inverse of :meth:`to_arrays`; refuses a file without every array or with mismatched sizes."""
        missing = [k for k in ARRAYS if k not in arrays]
        if missing:
            raise ValueError(f"the weights lack {', '.join(missing)}")
        n = len(arrays["parcel_ids"])
        if not all(len(arrays[k]) == n for k in ("mean", "scale", "coef")):
            raise ValueError("the parcel ids, mean, scale and coefficients differ in length")
        return cls(
            arrays["parcels"],
            arrays["parcel_ids"],
            arrays["mean"],
            arrays["scale"],
            arrays["coef"],
            float(arrays["intercept"][0]),
            target,
        )


def fit_parcel_model(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    parcels: np.ndarray,
    *,
    target: str = "classification",
    seed: int = 0,
    name: str = PRIMARY_MODEL,
) -> tuple[ParcelLinearModel, Any, dict[str, Any]]:
    """Fit the pipeline of parcel model ``name`` on every sample; returns ``(model, fitted pipeline,
    card facts)``.

    ``x`` (n, X, Y, Z) samples on the grid, ``y`` classes (1 = severe) or scores, ``groups`` the
    subject of each sample (the inner CV that chooses the strength splits by subject), ``parcels`` the
    atlas label volume on the grid. The pipeline is the one the cross-validation fits per fold: the
    primary model's, or a sparse model's whole-pipeline search (:data:`workflows.models.PARCEL_EXPORTS`),
    of which the refit on every sample is kept.
    """
    operator, ids = parcel_matrix(parcels)
    features = parcel_means(x, operator)
    search = PARCEL_EXPORTS[name]
    fitted = (
        map_pipeline(nested_estimator(target, y, groups, seed)) if search is None else search(y, groups, seed)
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LinAlgWarning)
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted.fit(features, y)
    pipeline = getattr(fitted, "best_estimator_", fitted)
    scaler, estimator = pipeline[0], pipeline[-1]
    kept = np.where(np.isin(parcels, ids), parcels, 0).astype(np.int32)
    model = ParcelLinearModel(
        kept,
        ids,
        np.asarray(scaler.mean_, float),
        np.asarray(scaler.scale_, float),
        np.ravel(estimator.coef_).astype(float),
        float(np.ravel(estimator.intercept_)[0]),
        target,
    )
    strength = {
        name: float(np.ravel(getattr(estimator, attr))[0])
        for name, attr in (("C", "C_"), ("C", "C"), ("alpha", "alpha_"), ("alpha", "alpha"))
        if hasattr(estimator, attr) and not isinstance(getattr(estimator, attr), str)
    }
    if search is not None:  # the sparse models' mixing (1 for L1), and how many parcels they kept
        strength["l1_ratio"] = float(estimator.l1_ratio)
    facts = {
        "model": name,
        "estimator": type(estimator).__name__,
        "strength": strength,
        "n_parcels": int(ids.size),
        "n_nonzero": int(np.count_nonzero(estimator.coef_)),
    }
    return model, pipeline, facts


def features_record(model: ParcelLinearModel, name: str = PRIMARY_MODEL) -> dict[str, Any]:
    """The card's definition of the features (bound to the model id: it changes a prediction) of the
    parcel model ``name``: HCPEx parcels, or the motor prior's regions (:mod:`workflows.motor_prior`)."""
    if name == MOTOR_PRIOR_MODEL:
        atlas: Any = {
            "regions": region_names(),
            "atlases": {r.name: f"{r.atlas}: {', '.join(r.patterns)}" for r in MOTOR_PRIOR_REGIONS},
            "references": list(PRIOR_REFERENCES),
        }
        what = "region of the motor prior (label i is the i-th of 'regions'; ipsilesional = left)"
        kept = "regions"
    else:
        atlas, what, kept = PARCEL_ATLAS, "parcel", "atlas parcels"
    return {
        "atlas": atlas,
        "definition": f"mean of the map over the finite voxels of each {what} of the label volume stored "
        "with the weights (array 'parcels', on the card's input grid: lesion-aligned, lesion and mirror "
        f"excluded as NaN); {kept} with at least {MIN_PARCEL_VOXELS} voxels on the grid",
        "n_parcels": int(model.parcel_ids.size),
        "preprocessing": "standardised with the training mean and SD (arrays 'mean', 'scale'); a parcel "
        "without a finite voxel is set to the training mean",
        "link": "identity (predicted UL-FMA)" if model.target == "regression" else "logistic",
    }
