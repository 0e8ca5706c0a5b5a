"""Which window length and which dFC map find dynamics-only effects at realistic run lengths (issue 24).

Generated cohorts from the simulator's signal model (``strokefc_sim.signal``, ``dynamics="states"``:
the seed-target coupling switches between a strong and a weak state with dwell times of 40-80 s, a
published range, see that module), on region time series, not NIfTI: per subject a seed series and
``--voxels`` voxel series in each of the 3 planted targets. For each effect type (dynamic, static,
both, none) x run length (180, 240 and, for reference, 400 volumes at TR 2 s) x window (30, 44, 60,
100 s), after a band-pass of 0.01-0.08 Hz (4th-order Butterworth, zero phase):

- ``dfcsd``: SD over windows (rectangular, step 1) of the Fisher z of the sliding-window correlation;
- ``nullref``: ``dfcsd`` minus the mean ``dfcsd`` of ``--surrogates`` phase-randomised surrogates of the
  same series (the same random phases for the seed and the targets, so their cross-spectrum and hence
  their static coupling are kept), same window and filter;
- ``dfcmean``: mean over windows of the same Fisher z (nearly static FC; a control);
- ``fc``: Fisher z of the whole-run correlation (static FC, the same for every window).

Besides each fixed window, ``auto`` chooses the window inside each outer training fold, as the group
level's ``--timescale auto`` does: the window whose one-feature model scores the best balanced accuracy
in an inner stratified 5-fold CV of the training subjects only, then that model predicts the fold's test
subjects (the outer test subjects never take part in the choice).

Each value is averaged over the target voxels; the **oracle** is a one-feature logistic regression on
it, 5-fold stratified CV repeated ``--repeats`` times, balanced accuracy (mean and SD over repeats).
The sliding-window correlation and the surrogates are written here with numpy: nothing is imported
from ``workflows`` (the app's kernel is being rewritten; this measures the science, not the code).

Censoring (effect type ``none``, the null): 25% of the volumes in bursts of 4-12 volumes are linearly
interpolated before filtering, windows with < 80% kept volumes are dropped, and the surrogates are made
(a) from the interpolated, band-passed series with the same windows dropped (what issue 24 proposes)
and (b) from the band-passed series with the censored volumes set to zero (the zero-filling the issue
found biased). The mean ``nullref`` over subjects should be near 0 for (a).

Usage: ``python benchmarks/timescales.py [--subjects 40] [--surrogates 20] [--repeats 5] [--name N]``;
writes ``benchmarks/results/<N>-<date>.json`` and ``.md`` (N: ``timescales``) and prints the table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from scipy.signal import butter, sosfiltfilt

from strokefc_sim.cohort import class_coupling, mild_amplitude
from strokefc_sim.params import EFFECT_TYPES, CohortParams
from strokefc_sim.signal import PLANTED_TARGETS, coupling_course, region_series

REPO = Path(__file__).resolve().parents[1]
TR = 2.0
WINDOWS_S = (30, 44, 60, 100)
RUN_LENGTHS = (180, 240, 400)
MAPS = ("dfcsd", "nullref", "dfcmean", "fc")
#: The maps whose window length ``auto`` chooses inside each training fold.
WINDOWED = ("dfcsd", "nullref", "dfcmean")


def bandpass(x: np.ndarray, tr: float, low: float = 0.01, high: float = 0.08) -> np.ndarray:
    """Columns of ``x`` (..., T, N) band-passed along T (Butterworth, order 4, forward-backward)."""
    sos = butter(4, [low, high], btype="bandpass", fs=1 / tr, output="sos")
    return sosfiltfilt(sos, x, axis=-2)


def window_sums(x: np.ndarray, w: int) -> np.ndarray:
    """Sums of ``x`` (..., T, N) over every window of ``w`` volumes, step 1: (..., T - w + 1, N)."""
    c = np.cumsum(x, axis=-2)
    zero = np.zeros_like(c[..., :1, :])
    c = np.concatenate([zero, c], axis=-2)
    return c[..., w:, :] - c[..., :-w, :]


def sliding_z(seed: np.ndarray, targets: np.ndarray, w: int) -> np.ndarray:
    """Fisher z of the windowed correlation of ``seed`` (..., T, 1) with ``targets`` (..., T, N)."""
    sx, sy = window_sums(seed, w), window_sums(targets, w)
    sxx, syy, sxy = window_sums(seed**2, w), window_sums(targets**2, w), window_sums(seed * targets, w)
    cov = sxy - sx * sy / w
    var = np.maximum((sxx - sx**2 / w) * (syy - sy**2 / w), 1e-20)
    return np.arctanh(np.clip(cov / np.sqrt(var), -0.999999, 0.999999))


def static_z(seed: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Fisher z of the whole-run correlation, per target column."""
    a = seed - seed.mean(axis=-2, keepdims=True)
    b = targets - targets.mean(axis=-2, keepdims=True)
    r = (a * b).sum(-2) / np.sqrt((a**2).sum(-2) * (b**2).sum(-2))
    return np.arctanh(r)


def phase_randomise(x: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` surrogates (n, T, N) of ``x`` (T, N): one random phase per frequency, shared by all columns.

    Sharing the phases keeps every auto- and cross-spectrum, so the static coupling stays and only the
    time-variation of the coupling is destroyed (a stationary null).
    """
    n_t = x.shape[0]
    spec = np.fft.rfft(x, axis=0)
    phases = rng.uniform(0, 2 * np.pi, (n, spec.shape[0], 1))
    phases[:, 0] = 0  # the mean stays real
    if n_t % 2 == 0:
        phases[:, -1] = 0  # so does the Nyquist term
    return np.fft.irfft(spec[None] * np.exp(1j * phases), n=n_t, axis=1)


def censor_bursts(rng: np.random.Generator, n_t: int, share: float = 0.25) -> np.ndarray:
    """A kept-volume mask with ``share`` of the volumes censored in bursts of 4-12 volumes."""
    kept = np.ones(n_t, bool)
    while (~kept).mean() < share:
        length = int(rng.integers(4, 13))
        start = int(rng.integers(0, n_t - length))
        kept[start : start + length] = False
    return kept


def interpolate(x: np.ndarray, kept: np.ndarray) -> np.ndarray:
    """Censored rows of ``x`` (T, N) replaced by linear interpolation between kept rows."""
    idx = np.arange(x.shape[0])
    return np.stack([np.interp(idx, idx[kept], col[kept]) for col in x.T], axis=1)


def dfc_values(
    series: np.ndarray, surrogates: np.ndarray, w: int, kept: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """dfcsd, null-referenced dfcsd and dfcmean per target of ``series`` (T, 1 + N), surrogates (S, T, 1 + N).

    With ``kept``, windows with < 80% kept volumes are dropped from the data and the surrogates alike.
    """
    z = sliding_z(series[:, :1], series[:, 1:], w)
    zs = sliding_z(surrogates[..., :1], surrogates[..., 1:], w)
    if kept is not None:
        good = window_sums(kept[:, None].astype(float), w)[:, 0] >= 0.8 * w
        z, zs = z[good], zs[:, good]
    sd = z.std(axis=0, ddof=1)
    return sd, sd - zs.std(axis=1, ddof=1).mean(axis=0), z.mean(axis=0)


def simulate_subjects(
    effect_type: str, n_t: int, n_subjects: int, n_voxels: int, seed: int
) -> tuple[list[np.ndarray], np.ndarray, list[dict]]:
    """Band-limited but unfiltered series (T, 1 + 3 x n_voxels) per subject, labels (1 = severe), truth."""
    p = CohortParams(dynamics="states", effect_type=effect_type, n_volumes=n_t, tr=TR)
    rng = np.random.default_rng([seed, n_t, EFFECT_TYPES.index(effect_type)])
    severe = np.arange(n_subjects) % 2 == 1
    rng.shuffle(severe)
    out, truth = [], []
    for s in severe:
        amp = p.effect * rng.uniform(0.8, 1.2) if s else mild_amplitude(rng, p.effect)
        amp, shift = class_coupling(p, bool(s), amp, rng)
        coupling, info = coupling_course(
            rng, n_t, TR, amp, dynamics="states", shift=shift, dwell_range_s=(p.dwell_min_s, p.dwell_max_s)
        )
        seed_series, targets = region_series(rng, n_t, TR, coupling, n_voxels * len(PLANTED_TARGETS))
        out.append(np.column_stack([seed_series, targets]))
        truth.append({"severe": bool(s), "amplitude": float(amp), "shift": float(shift), **info})
    return out, severe.astype(int), truth


def oracle(x: np.ndarray, y: np.ndarray, repeats: int) -> tuple[float, float]:
    """Balanced accuracy (mean, SD over repeats) of a one-feature logistic regression, 5-fold CV."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression())
    scores = [
        balanced_accuracy_score(
            y,
            cross_val_predict(model, x[:, None], y, cv=StratifiedKFold(5, shuffle=True, random_state=r)),
        )
        for r in range(repeats)
    ]
    return float(np.mean(scores)), float(np.std(scores))


def nested_oracle(xs: dict, y: np.ndarray, repeats: int) -> tuple[float, float, dict]:
    """:func:`oracle` with the window chosen inside each outer training fold (``xs``: window -> feature):
    the best inner 5-fold CV balanced accuracy on the training subjects only. Returns the balanced
    accuracy (mean, SD over repeats) and how often each window was chosen."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def model():
        return make_pipeline(StandardScaler(), LogisticRegression())

    scores, chosen = [], {}
    for r in range(repeats):
        pred = np.zeros_like(y)
        for train, test in StratifiedKFold(5, shuffle=True, random_state=r).split(y, y):
            inner = StratifiedKFold(5, shuffle=True, random_state=1000 + r)
            inner_ba = {
                w: balanced_accuracy_score(
                    y[train], cross_val_predict(model(), x[train][:, None], y[train], cv=inner)
                )
                for w, x in xs.items()
            }
            best = max(inner_ba, key=lambda w: inner_ba[w])
            chosen[best] = chosen.get(best, 0) + 1
            fitted = model().fit(xs[best][train][:, None], y[train])
            pred[test] = fitted.predict(xs[best][test][:, None])
        scores.append(balanced_accuracy_score(y, pred))
    return float(np.mean(scores)), float(np.std(scores)), chosen


def auto_rows(feats: dict, y: np.ndarray, repeats: int) -> list[dict]:
    """One ``auto`` row per windowed map (:func:`nested_oracle`)."""
    rows = []
    for map_name in WINDOWED:
        ba, sd, chosen = nested_oracle({w: feats[(map_name, w)] for w in WINDOWS_S}, y, repeats)
        rows.append(
            {
                "window_s": "auto",
                "map": map_name,
                "balanced_accuracy": round(ba, 3),
                "sd_over_repeats": round(sd, 3),
                "chosen_windows_s": {str(k): v for k, v in sorted(chosen.items())},
            }
        )
    return rows


def features(
    subjects: list[np.ndarray], n_surrogates: int, seed: int, kept_masks: list | None = None
) -> dict:
    """Per subject and window: mean dfcsd and nullref over the targets, and static FC."""
    rng = np.random.default_rng(seed)
    out: dict = {
        "fc": [],
        **{(m, w): [] for m in ("dfcsd", "nullref", "dfcmean", "nullref_zerofill") for w in WINDOWS_S},
    }
    for i, raw in enumerate(subjects):
        kept = None if kept_masks is None else kept_masks[i]
        clean = bandpass(raw if kept is None else interpolate(raw, kept), TR)
        sur = phase_randomise(clean, n_surrogates, rng)
        sur_zero = None
        if kept is not None:
            zeroed = clean.copy()
            zeroed[~kept] = 0.0  # the biased variant: censored rows zero-filled before randomisation
            sur_zero = phase_randomise(zeroed, n_surrogates, rng)
        out["fc"].append(static_z(clean[:, :1], clean[:, 1:]).mean())
        for w_s in WINDOWS_S:
            w = round(w_s / TR)
            sd, ref, mean = dfc_values(clean, sur, w, kept)
            out[("dfcsd", w_s)].append(sd.mean())
            out[("nullref", w_s)].append(ref.mean())
            out[("dfcmean", w_s)].append(mean.mean())
            if sur_zero is not None:
                _, ref_zero, _ = dfc_values(clean, sur_zero, w, kept)
                out[("nullref_zerofill", w_s)].append(ref_zero.mean())
    return {k: np.asarray(v) for k, v in out.items() if len(v)}


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu or platform.processor(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "load_avg_start": os.getloadavg(),
        "python": platform.python_version(),
        "numpy": np.__version__,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", type=int, default=40)
    parser.add_argument("--voxels", type=int, default=4, help="voxels per planted target")
    parser.add_argument("--surrogates", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--null-cohorts", type=int, default=5, help="extra null cohorts (other seeds)")
    parser.add_argument("--seed", type=int, default=24)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--run-lengths", type=int, nargs="+", default=list(RUN_LENGTHS), help="volumes per run (TR 2 s)"
    )
    parser.add_argument("--name", default="timescales", help="results file: <name>-<date>.json/.md")
    args = parser.parse_args(argv)
    start = time.time()
    info = machine()
    defaults = CohortParams(dynamics="states")
    rows, truth_summary = [], {}
    run_lengths = tuple(args.run_lengths)
    for n_t in run_lengths:
        for effect_type in EFFECT_TYPES:
            subjects, y, truth = simulate_subjects(effect_type, n_t, args.subjects, args.voxels, args.seed)
            feats = features(subjects, args.surrogates, args.seed + n_t)
            dwells = [d for t in truth for d in t["dwell_s"]]
            truth_summary[f"{effect_type}-{n_t}"] = {
                "dwell_s_min_max": [min(dwells), max(dwells)],
                "mean_coupling_severe": float(np.mean([t["mean_coupling"] for t in truth if t["severe"]])),
                "mean_coupling_mild": float(np.mean([t["mean_coupling"] for t in truth if not t["severe"]])),
            }
            for key, x in feats.items():
                map_name, w_s = (key, None) if key == "fc" else key
                ba, sd = oracle(x, y, args.repeats)
                rows.append(
                    {
                        "effect_type": effect_type,
                        "n_volumes": n_t,
                        "window_s": w_s,
                        "map": map_name,
                        "balanced_accuracy": round(ba, 3),
                        "sd_over_repeats": round(sd, 3),
                        "mean_severe": round(float(x[y == 1].mean()), 4),
                        "mean_mild": round(float(x[y == 0].mean()), 4),
                    }
                )
            rows += [
                {"effect_type": effect_type, "n_volumes": n_t, **row}
                for row in auto_rows(feats, y, args.repeats)
            ]
            print(f"{effect_type:8s} {n_t} volumes: {time.time() - start:.0f} s", flush=True)
    # more null cohorts: the spread of the oracle under no effect at all (false-positive check)
    null_bas: dict = {}
    for k in range(args.null_cohorts):
        for n_t in run_lengths[:2]:
            subjects, y, _ = simulate_subjects("none", n_t, args.subjects, args.voxels, args.seed + 1000 + k)
            feats = features(subjects, args.surrogates, args.seed + 2000 + k)
            for key, x in feats.items():
                name = "fc" if key == "fc" else f"{key[0]}-{key[1]}s"
                null_bas.setdefault(f"{name}-{n_t}", []).append(oracle(x, y, args.repeats)[0])
            for row in auto_rows(feats, y, args.repeats):
                null_bas.setdefault(f"{row['map']}-auto-{n_t}", []).append(row["balanced_accuracy"])
    # censoring on the null
    censoring = {}
    for n_t in run_lengths[:2]:
        subjects, _, _ = simulate_subjects("none", n_t, args.subjects, args.voxels, args.seed + 7)
        crng = np.random.default_rng([args.seed, n_t, 99])
        masks = [censor_bursts(crng, n_t) for _ in subjects]
        plain = features(subjects, args.surrogates, args.seed + 3)
        cens = features(subjects, args.surrogates, args.seed + 3, masks)
        for w_s in WINDOWS_S:
            censoring[f"{n_t}-{w_s}s"] = {
                "nullref_uncensored": round(float(plain[("nullref", w_s)].mean()), 4),
                "nullref_censored_interpolated": round(float(cens[("nullref", w_s)].mean()), 4),
                "nullref_censored_interpolated_sd": round(float(cens[("nullref", w_s)].std()), 4),
                "nullref_censored_zerofilled": round(float(cens[("nullref_zerofill", w_s)].mean()), 4),
                "censored_share": round(float(np.mean([(~m).mean() for m in masks])), 3),
            }
    info["wall_s"] = round(time.time() - start, 1)
    info["load_avg_end"] = os.getloadavg()
    result = {
        "machine": info,
        "settings": {
            **vars(args),
            "tr": TR,
            "windows_s": WINDOWS_S,
            "run_lengths": run_lengths,
            "dwell_range_s": [defaults.dwell_min_s, defaults.dwell_max_s],
            "effect": defaults.effect,
            "static_effect": defaults.static_effect,
            "bandpass_hz": [0.01, 0.08],
        },
        "truth": truth_summary,
        "oracle": rows,
        "null_cohorts": {
            k: {"mean": round(float(np.mean(v)), 3), "max": round(float(np.max(v)), 3), "all": v}
            for k, v in null_bas.items()
        },
        "censoring_null": censoring,
    }
    text = table(result)
    print(text)
    if not args.no_write:
        stem = REPO / "benchmarks" / "results" / f"{args.name}-{dt.date.today().isoformat()}"
        stem.with_suffix(".json").write_text(json.dumps(result, indent=1, default=str) + "\n")
        stem.with_suffix(".md").write_text(text)
        print(f"written to {stem}.json and .md")
    return 0


def table(result: dict) -> str:
    s, m = result["settings"], result["machine"]
    lines = [
        "# dFC timescales on generated cohorts (issue 24)",
        "",
        f"{s['subjects']} subjects (half severe), states model (dwell {s['dwell_range_s'][0]:g}-"
        f"{s['dwell_range_s'][1]:g} s, effect {s['effect']}, static effect {s['static_effect']}), "
        f"TR {s['tr']} s, band-pass 0.01-0.08 Hz, {s['voxels']} voxels x 3 targets, "
        f"{s['surrogates']} surrogates, oracle 5-fold x {s['repeats']} repeats. "
        f"Machine: {m['cpu']}, {m['cores_usable']} cores (shared), load {m['load_avg_start'][0]:.2f}; "
        f"wall {m.get('wall_s', 0):.0f} s.",
        "",
        "Oracle balanced accuracy (mean ± SD over repeats); `fc` does not depend on the window; `auto`: "
        "the window chosen inside each training fold by an inner CV of the training subjects only.",
        "",
    ]
    cols = [(n_t, mp) for n_t in s["run_lengths"] for mp in MAPS]
    lines.append("| effect | window | " + " | ".join(f"{mp} {n_t}" for n_t, mp in cols) + " |")
    lines.append("|---|---|" + "---|" * len(cols))
    index = {(r["effect_type"], r["window_s"], r["map"], r["n_volumes"]): r for r in result["oracle"]}
    for et in EFFECT_TYPES:
        for w_s in [*s["windows_s"], "auto"]:
            cells = []
            for n_t, mp in cols:
                r = index.get((et, None if mp == "fc" else w_s, mp, n_t))
                cells.append(f"{r['balanced_accuracy']:.2f} ± {r['sd_over_repeats']:.2f}" if r else "-")
            unit = "" if w_s == "auto" else " s"
            lines.append(f"| {et} | {w_s}{unit} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Windows chosen by `auto` (over folds x repeats) for dfcsd:",
        "",
        "| effect | " + " | ".join(f"{n} vol" for n in s["run_lengths"]) + " |",
        "|---|" + "---|" * len(s["run_lengths"]),
    ]
    for et in EFFECT_TYPES:
        cells = []
        for n_t in s["run_lengths"]:
            r = index.get((et, "auto", "dfcsd", n_t))
            counts = r.get("chosen_windows_s", {}) if r else {}
            cells.append(", ".join(f"{k} s: {v}" for k, v in counts.items()) or "-")
        lines.append(f"| {et} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Null cohorts ({s['null_cohorts']} more seeds, effect type none): oracle balanced accuracy, "
        "mean and max over cohorts.",
        "",
        "| map | " + " | ".join(f"{n} vol" for n in s["run_lengths"][:2]) + " |",
        "|---|" + "---|" * 2,
    ]
    names = sorted({k.rsplit("-", 1)[0] for k in result["null_cohorts"]})
    for name in names:
        cells = []
        for n_t in s["run_lengths"][:2]:
            v = result["null_cohorts"].get(f"{name}-{n_t}")
            cells.append(f"{v['mean']:.2f} (max {v['max']:.2f})" if v else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Censoring on the null (25% of volumes in bursts of 4-12, interpolated before filtering, windows "
        "with < 80% kept dropped): mean null-referenced dfcsd over subjects.",
        "",
        "| run, window | uncensored | censored, surrogates of interpolated series (SD over subjects) "
        "| censored, surrogates of zero-filled series |",
        "|---|---|---|---|",
    ]
    for k, v in result["censoring_null"].items():
        lines.append(
            f"| {k} | {v['nullref_uncensored']:+.3f} | {v['nullref_censored_interpolated']:+.3f} "
            f"({v['nullref_censored_interpolated_sd']:.3f}) | {v['nullref_censored_zerofilled']:+.3f} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
