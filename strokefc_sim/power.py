"""``strokefc-power``: the balanced accuracy a study design can expect, before anyone is scanned.

For a design (patients, share of severe patients, run length, TR, window, effect size, type and
timescale), :func:`expected_accuracy` simulates ``repeats`` cohorts with the simulator's signal model
(:func:`strokefc_sim.signal.region_series`, coupling from :func:`strokefc_sim.signal.coupling_course`)
on region time series instead of NIfTI runs, and runs strokefc's own steps on them: the denoising
band-pass (:func:`workflows.denoise.clean_series`), the sliding-window kernel
(:func:`workflows.dfc.sliding_window_dfc`), the primary model's estimator
(:func:`workflows.models.nested_estimator`) and the subject-level folds
(:func:`workflows.cross_validation.subject_folds`). Each subject has ``n_parcels`` parcel features,
``planted_parcels`` of which hold the effect; a parcel's value is the mean of ``voxels_per_parcel``
voxel maps, as the app averages voxel maps within atlas parcels.

Models, on the same folds of each cohort: the **oracle** (one feature: the mean over the planted
parcels; an upper bound no real model reaches, since it knows where the effect is), the **whole-brain
parcel model** on the dFC-SD parcels, the **a-priori model** on ``prior_parcels`` of them (as the motor
prior's 12 regions: the planted parcels unless ``planted_outside_prior`` of them lie outside it, which
measures what a wrong prior costs) and the **static-FC control** on the static FC parcels. The answer
is each model's balanced accuracy over cohorts: mean, SD, 10th and 90th percentiles (the spread a study
of this design would meet). It is a sketch of the full app (no motion, lesions or confound regression;
fewer voxels per parcel), checked against full app runs in ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from strokefc_sim.cohort import class_coupling, mild_amplitude
from strokefc_sim.params import EFFECT_TYPES, CohortParams, _opt
from strokefc_sim.signal import coupling_course, region_series
from workflows.params import WindowParams, split_duration

MODELS = ("oracle", "parcel", "prior", "static_fc")


#: The simulator's and the app's defaults, so that a design's defaults are theirs (each written once).
_SIM = CohortParams()
_LENGTH, _UNIT = split_duration(WindowParams.window_length)
_WINDOW_S = _LENGTH if _UNIT == "s" else _LENGTH * _SIM.tr


@dataclass(frozen=True)
class Design:
    """A study design and how many cohorts to simulate for it."""

    n_patients: int = _opt(40, "patients")
    severe_fraction: float = _opt(_SIM.severe_fraction, "share of severe patients (UL-FMA <= 20)")
    n_volumes: int = _opt(240, "volumes per run (after dummy scans)")
    tr: float = _opt(_SIM.tr, "repetition time (s)")
    window_s: float = _opt(_WINDOW_S, "sliding-window length (s), as strokefc's --window-length")
    effect: float = _opt(
        _SIM.effect, "size of the coupling's variation in severe patients (the simulator's --effect)"
    )
    effect_type: str = _opt("dynamic", "dynamic, static, both or none (the simulator's --effect-type)")
    static_effect: float = _opt(
        _SIM.static_effect, "lower mean coupling of severe patients with static or both"
    )
    dwell_min_s: float = _opt(_SIM.dwell_min_s, "shortest coupling-state dwell time (s)")
    dwell_max_s: float = _opt(_SIM.dwell_max_s, "longest coupling-state dwell time (s)")
    planted_parcels: int = _opt(4, "parcels that carry the effect")
    n_parcels: int = _opt(400, "parcel features of the model (HCPEx keeps 406 on the 4 mm grid)")
    prior_parcels: int = _opt(12, "features of the a-priori model (the motor prior's 12 regions)")
    planted_outside_prior: int = _opt(
        0, "planted parcels that lie outside the a-priori model's features (its cost when the prior is wrong)"
    )
    voxels_per_parcel: int = _opt(8, "voxel maps averaged into one parcel value")
    n_folds: int = _opt(5, "cross-validation folds")
    repeats: int = _opt(5, "simulated cohorts")
    seed: int = _opt(0, "random seed")

    def check(self) -> None:
        """Stop with the flag named on a design that cannot be simulated."""
        if self.effect_type not in EFFECT_TYPES:
            raise SystemExit(f"--effect-type must be one of {', '.join(EFFECT_TYPES)}")
        n_severe = round(self.n_patients * self.severe_fraction)
        if min(n_severe, self.n_patients - n_severe) < self.n_folds:
            raise SystemExit(
                f"--n-patients {self.n_patients} with --severe-fraction {self.severe_fraction} leaves "
                f"fewer than --n-folds {self.n_folds} patients in a class"
            )
        if not 0 < self.planted_parcels < self.n_parcels:
            raise SystemExit("--planted-parcels must be at least 1 and fewer than --n-parcels")
        inside = self.planted_parcels - self.planted_outside_prior
        if not 0 <= self.planted_outside_prior <= self.planted_parcels or inside > self.prior_parcels:
            raise SystemExit(
                "--planted-outside-prior must be between 0 and --planted-parcels, and the planted parcels "
                "inside the prior at most --prior-parcels"
            )
        if self.prior_parcels - inside > self.n_parcels - self.planted_parcels:
            raise SystemExit("--prior-parcels leaves too few unplanted parcels to fill the prior")
        if round(self.window_s / self.tr) * 2 > self.n_volumes:
            raise SystemExit("--window-s must be at most half the run (--n-volumes x --tr)")


def simulate_features(design: Design, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One cohort: labels (1 = severe) and (patients, parcels) dFC-SD and static-FC features."""
    from workflows.denoise import clean_series
    from workflows.dfc import WindowSpec, sliding_window_dfc
    from workflows.params import DenoiseParams

    p = CohortParams(
        dynamics="states",
        effect_type=design.effect_type,
        effect=design.effect,
        static_effect=design.static_effect,
        dwell_min_s=design.dwell_min_s,
        dwell_max_s=design.dwell_max_s,
    )
    n_severe = round(design.n_patients * design.severe_fraction)
    severe = np.array([True] * n_severe + [False] * (design.n_patients - n_severe))
    rng.shuffle(severe)
    window = WindowSpec.from_params(WindowParams(window_length=f"{design.window_s:g}s"), design.tr)
    kept = np.ones(design.n_volumes, bool)
    n_planted = design.planted_parcels * design.voxels_per_parcel
    n_other = (design.n_parcels - design.planted_parcels) * design.voxels_per_parcel
    sd, fc = [], []
    for is_severe in severe:
        amp = p.effect * rng.uniform(0.8, 1.2) if is_severe else mild_amplitude(rng, p.effect)
        amp, shift = class_coupling(p, bool(is_severe), amp, rng)
        coupling, _ = coupling_course(
            rng,
            design.n_volumes,
            design.tr,
            amp,
            dynamics="states",
            shift=shift,
            dwell_range_s=(p.dwell_min_s, p.dwell_max_s),
        )
        seed, voxels = region_series(rng, design.n_volumes, design.tr, coupling, n_planted, n_other)
        clean = clean_series(np.column_stack([seed, voxels]), None, kept, design.tr, DenoiseParams())
        result = sliding_window_dfc(clean[:, 0].astype(np.float64), clean[:, 1:], window)
        sd.append(result.sd.reshape(design.n_parcels, design.voxels_per_parcel).mean(axis=1))
        fc.append(result.static.reshape(design.n_parcels, design.voxels_per_parcel).mean(axis=1))
    return {"y": severe.astype(int), "dfcsd": np.array(sd), "fc": np.array(fc)}


def prior_columns(design: Design) -> np.ndarray:
    """The a-priori model's features: the planted parcels inside the prior (the first
    ``planted_parcels - planted_outside_prior``), then unplanted parcels up to ``prior_parcels``."""
    inside = design.planted_parcels - design.planted_outside_prior
    rest = np.arange(design.planted_parcels, design.planted_parcels + design.prior_parcels - inside)
    return np.concatenate([np.arange(inside), rest])


def cohort_accuracy(features: dict[str, np.ndarray], design: Design, seed: int) -> dict[str, float]:
    """Each model's balanced accuracy on one cohort, pooled over the same subject-level folds."""
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from workflows.cross_validation import subject_folds
    from workflows.models import nested_estimator

    y = features["y"]
    groups = np.arange(y.size)
    inputs = {
        "oracle": features["dfcsd"][:, : design.planted_parcels].mean(axis=1, keepdims=True),
        "parcel": features["dfcsd"],
        "prior": features["dfcsd"][:, prior_columns(design)],
        "static_fc": features["fc"],
    }
    folds = subject_folds(y, groups, design.n_folds, 1, seed)
    out = {}
    for name, x in inputs.items():
        pred = np.zeros(y.size, int)
        for fold in folds:
            train, test = np.asarray(fold["train"]), np.asarray(fold["test"])
            model = make_pipeline(
                StandardScaler(), nested_estimator("classification", y[train], groups[train], seed)
            )
            pred[test] = model.fit(x[train], y[train]).predict(x[test])
        out[name] = float(balanced_accuracy_score(y, pred))
    return out


def expected_accuracy(design: Design) -> dict[str, Any]:
    """Balanced accuracy of each model over ``design.repeats`` simulated cohorts: values and summary."""
    from threadpoolctl import threadpool_limits

    design.check()
    start = time.perf_counter()
    rng = np.random.default_rng(design.seed)
    values: dict[str, list[float]] = {m: [] for m in MODELS}
    # small matrices: one BLAS thread is several times faster than many competing for the cores
    with threadpool_limits(1):
        for repeat in range(design.repeats):
            scores = cohort_accuracy(simulate_features(design, rng), design, design.seed + repeat)
            for name, value in scores.items():
                values[name].append(value)
    summary = {
        name: {
            "mean": float(np.mean(v)),
            "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
            "p10": float(np.percentile(v, 10)),
            "p90": float(np.percentile(v, 90)),
        }
        for name, v in values.items()
    }
    return {
        "design": dataclasses.asdict(design),
        "values": values,
        "summary": summary,
        "seconds": round(time.perf_counter() - start, 1),
    }


LABELS = {
    "oracle": "oracle (knows the planted parcels: an upper bound)",
    "parcel": "whole-brain parcel model (dFC SD)",
    "prior": "a-priori model (dFC SD, --prior-parcels)",
    "static_fc": "static-FC control",
}


def format_answer(result: dict[str, Any]) -> str:
    """The answer as a short text table."""
    d = result["design"]
    lines = [
        f"Design: {d['n_patients']} patients ({d['severe_fraction']:.0%} severe), {d['n_volumes']} volumes "
        f"at TR {d['tr']:g} s ({d['n_volumes'] * d['tr'] / 60:.1f} min), {d['window_s']:g} s windows, "
        f"{d['effect_type']} effect {d['effect']:g}, "
        f"coupling states of {d['dwell_min_s']:g}-{d['dwell_max_s']:g} s; "
        f"{d['repeats']} simulated cohorts, {d['n_folds']}-fold subject-level CV.",
        "",
        f"{'model':<52} {'balanced accuracy':>18} {'10-90% of studies':>18}",
    ]
    for name, s in result["summary"].items():
        lines.append(
            f"{LABELS[name]:<52} {s['mean']:>10.2f} ± {s['sd']:.2f} {s['p10']:>10.2f}-{s['p90']:.2f}"
        )
    lines += ["", f"Chance is 0.50. Computed in {result['seconds']:g} s."]
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="strokefc-power",
        description="The balanced accuracy a study design can expect, from simulated cohorts.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    for f in dataclasses.fields(Design):
        parser.add_argument(
            "--" + f.name.replace("_", "-"), type=type(f.default), default=f.default, help=f.metadata["help"]
        )
    parser.add_argument("--json", action="store_true", help="print the full result as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    import json

    args = build_parser().parse_args(argv)
    design = Design(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Design)})
    result = expected_accuracy(design)
    print(json.dumps(result, indent=2) if args.json else format_answer(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
