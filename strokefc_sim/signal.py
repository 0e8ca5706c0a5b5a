"""The signal model of one simulated run: what each voxel of the BOLD data and the confounds hold.

Band-limited (0.01-0.08 Hz) signals: a global signal, motion artefacts, a motor-network signal shared
by both M1 and the SMA, voxel noise and a coupling between the ipsilesional M1 seed and the
:data:`PLANTED_TARGETS` that may vary in time (:func:`coupling_course`). Two models of that coupling:

- ``oscillation`` (the original model): a smoothed square wave of period 200-300 s whose amplitude is
  the ``amplitude`` argument. It was fitted to strokefc's 100 s default window, not to data.
- ``states``: the coupling switches between a strong and a weak state with dwell times drawn
  uniformly from ``dwell_range_s`` (default 40-80 s). Published sliding-window dFC states last of the
  order of tens of seconds to a few minutes (Allen et al. 2014, Cereb Cortex 24:663, 405 subjects;
  Hutchison et al. 2013, NeuroImage 80:360, review); sliding-window connectivity states are resolved at
  about 30-60 s (Commun Biol 2022, doi:10.1038/s42003-022-03950-4, introduction), and motor-network
  states after stroke were described at that resolution (Bonkhoff et al. 2020, Brain 143:1525). The
  40-80 s default sits inside that range; it is not chosen to suit any window of strokefc. The
  coupling's time average is exactly the subject's mean coupling, whatever share of the run each state
  takes, so that static FC carries no dynamic effect by construction.

Optional: a lesion cavity artefact and a hemodynamic lag of the lesioned hemisphere.
"""

from __future__ import annotations

import nibabel as nb
import numpy as np
import pandas as pd

from strokefc_sim.params import DYNAMICS

#: The simulator's own truth, the regions whose coupling with the seed it plants: (atlas, region
#: pattern, hemisphere relative to the lesion). The app traces the same regions in its report
#: (``workflows.interfaces.dfc.REPORT_REGIONS``), but they are declared apart on purpose: the planted
#: effect is ground truth that the app's choices must not define.
PLANTED_TARGETS = (
    ("HCPEx", "Primary_Motor_Cortex_{side}", "contra"),
    ("AAL", "Supp_Motor_Area_{side}", "ipsi"),
    ("AAL", "Thalamus_{side}", "ipsi"),
)
MOTION = ("trans_x", "trans_y", "trans_z", "rot_x", "rot_y", "rot_z")
#: Mean seed-target coupling of the ``states`` model (the ``oscillation`` model centres on 0.1).
STATES_MEAN_COUPLING = 0.3
#: Largest |coupling| either model reaches.
MAX_COUPLING = 0.95
#: Weights of the signal components of a voxel (shared with :func:`region_series`).
W_NOISE_BL, W_NOISE_WHITE, W_GLOBAL, W_MOTOR, W_SEED, W_TARGET = 0.6, 0.4, 0.3, 0.5, 0.8, 1.6


def bandlimited(
    rng: np.random.Generator, n_t: int, n: int, tr: float, low: float = 0.01, high: float = 0.08
) -> np.ndarray:
    """``n`` unit-variance Gaussian series (T, n) limited to ``low``-``high`` Hz."""
    freqs = np.fft.rfftfreq(n_t, tr)
    spec = rng.standard_normal((freqs.size, n)) + 1j * rng.standard_normal((freqs.size, n))
    spec[(freqs < low) | (freqs > high)] = 0
    out = np.fft.irfft(spec, n=n_t, axis=0)
    out -= out.mean(axis=0)
    return out / np.maximum(out.std(axis=0), 1e-12)


def _regions(mask_img: nb.Nifti1Image, side: str) -> dict[str, np.ndarray]:
    """Seed and target masks (booleans over the brain voxels) for a lesion side."""
    from workflows.seeds import atlas_region_mask

    contra = "R" if side == "L" else "L"
    inside = np.asarray(mask_img.dataobj) > 0
    out = {
        "seed": np.asarray(atlas_region_mask("HCPEx", [f"Primary_Motor_Cortex_{side}"], mask_img).dataobj)[
            inside
        ]
        > 0
    }
    for atlas, pattern, rel in PLANTED_TARGETS:
        name = pattern.format(side=side if rel == "ipsi" else contra)
        out[name] = np.asarray(atlas_region_mask(atlas, [name], mask_img).dataobj)[inside] > 0
    motor_other = f"Primary_Motor_Cortex_{contra}"
    out["motor"] = out["seed"] | out[motor_other]
    return out


def _motion(
    rng: np.random.Generator, n_t: int, tr: float, n_spikes: int, scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Motion parameters (T, 6), their derivatives and FD: jitter around a position, plus a few jumps.

    ``scale`` multiplies the jitter and the jumps (the same random draws, so other outputs are unchanged).

    Real estimates are mostly high-frequency jitter with occasional steps; a random walk would make
    24 smooth regressors that soak up slow neural signal, which real data do not show to that degree.
    """
    params = np.zeros((n_t, 6))
    params[:, :3] = rng.normal(0, 0.03 * scale, (n_t, 3))
    params[:, 3:] = rng.normal(0, 0.0005 * scale, (n_t, 3))  # radians
    for t in rng.choice(np.arange(5, n_t - 5), size=n_spikes, replace=False):
        params[t:, :3] += rng.normal(0, 0.3 * scale, 3)
    d = np.vstack([np.zeros((1, 6)), np.diff(params, axis=0)])
    fd = np.abs(d[:, :3]).sum(axis=1) + 50 * np.abs(d[:, 3:]).sum(axis=1)
    return params, d, fd


def coupling_course(
    rng: np.random.Generator,
    n_t: int,
    tr: float,
    amplitude: float,
    *,
    dynamics: str = "oscillation",
    shift: float = 0.0,
    dwell_range_s: tuple[float, float] = (40.0, 80.0),
) -> tuple[np.ndarray, dict]:
    """The seed-target coupling over the run (T,) and what was drawn for it (the truth of the run).

    ``oscillation``: ``0.1 + shift + amplitude * tanh(3 sin(2 pi t / period + phase))``, clipped to
    +-0.95 (its time average is only roughly the centre). ``states``: two states, strong and weak,
    ``amplitude`` apart (less if needed to stay within +-0.95), alternating with dwell times uniform in
    ``dwell_range_s`` (the first one cut at a uniform point, as if the run began inside it); the time
    average is exactly ``STATES_MEAN_COUPLING + shift``. ``amplitude`` 0 gives a constant coupling.
    """
    t = np.arange(n_t) * tr
    if dynamics == "oscillation":
        phase = rng.uniform(0, 2 * np.pi)
        # states last at least two default windows (100 s): the coupling switches sign every 100-150 s
        # at least, so that windows as long as 1/high-pass (Leonardi & Van De Ville 2015) can see the
        # dynamics
        period = max(n_t * tr / rng.uniform(2.5, 3.5), rng.uniform(200.0, 300.0))
        # slow switches between positive and negative coupling (a smoothed square wave), minutes apart
        coupling = np.clip(
            0.1 + shift + amplitude * np.tanh(3 * np.sin(2 * np.pi * t / period + phase)),
            -MAX_COUPLING,
            MAX_COUPLING,
        )
        return coupling, {"dynamics": dynamics, "period_s": round(float(period), 3)}
    if dynamics != "states":
        raise ValueError(f"dynamics must be one of {DYNAMICS}, not {dynamics!r}")
    low, high = dwell_range_s
    first_strong = bool(rng.integers(2))
    dwells = [rng.uniform(low, high)]
    offset = rng.uniform(0, dwells[0])  # the run starts inside the first dwell
    while sum(dwells) - offset < n_t * tr:
        dwells.append(rng.uniform(low, high))
    bounds = np.cumsum(dwells) - offset
    index = np.searchsorted(bounds, t, side="right")  # which dwell each volume falls in
    strong = (index % 2 == 0) == first_strong
    share = float(strong.mean())
    centre = STATES_MEAN_COUPLING + shift
    gap = float(amplitude)
    if 0 < share < 1:  # keep both states within +-MAX_COUPLING without moving the mean
        gap = min(gap, (MAX_COUPLING - centre) / (1 - share), (MAX_COUPLING + centre) / share)
    coupling = centre + gap * (strong - share)
    info = {
        "dynamics": dynamics,
        "dwell_s": [round(float(d), 3) for d in dwells],
        "start_offset_s": round(float(offset), 3),
        "first_state": "strong" if first_strong else "weak",
        "strong_share": round(share, 4),
        "state_gap": round(gap, 4),
        "mean_coupling": round(float(coupling.mean()), 6),
    }
    return coupling, info


def target_signal(coupling: np.ndarray, seed_sig: np.ndarray, own: np.ndarray) -> np.ndarray:
    """A target's neural signal (T, N): the seed signal at the coupling, plus its own remainder."""
    return W_TARGET * (
        coupling[:, None] * seed_sig[:, None] + np.sqrt(np.clip(1 - coupling**2, 0, 1))[:, None] * own
    )


def region_series(
    rng: np.random.Generator,
    n_t: int,
    tr: float,
    coupling: np.ndarray,
    n_voxels: int = 1,
    n_uncoupled: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A seed series (T,) and ``n_voxels`` target voxel series (T, n_voxels) of the same signal model.

    For benchmarks and the study-design calculator, which need the time series and not the NIfTI
    cohort (no motion, lesion or lag; the draws are not those of :func:`simulate_run`). The seed is the
    region mean of the seed voxels, whose voxel noise averages out; each target series is one voxel with
    its own noise, as in the app's voxel-wise maps. ``n_uncoupled`` more columns are voxels of the same
    model with no coupling to the seed (regions without the effect); drawn last, so the first columns
    do not depend on it.
    """
    glob = bandlimited(rng, n_t, 1, tr)[:, 0]
    motor = bandlimited(rng, n_t, 1, tr)[:, 0]
    seed_sig = bandlimited(rng, n_t, 1, tr)[:, 0]
    seed = W_GLOBAL * glob + W_MOTOR * motor + W_SEED * seed_sig
    targets = W_NOISE_BL * bandlimited(rng, n_t, n_voxels, tr, 0.005, 0.2)
    targets += W_NOISE_WHITE * rng.standard_normal((n_t, n_voxels))
    targets += W_GLOBAL * glob[:, None]
    targets += target_signal(coupling, seed_sig, bandlimited(rng, n_t, n_voxels, tr))
    if n_uncoupled:
        other = W_NOISE_BL * bandlimited(rng, n_t, n_uncoupled, tr, 0.005, 0.2)
        other += W_NOISE_WHITE * rng.standard_normal((n_t, n_uncoupled))
        other += W_GLOBAL * glob[:, None]
        other += target_signal(np.zeros(n_t), seed_sig, bandlimited(rng, n_t, n_uncoupled, tr))
        targets = np.concatenate([targets, other], axis=1)
    return seed, targets


def simulate_run(
    rng: np.random.Generator,
    mask_img: nb.Nifti1Image,
    side: str,
    *,
    n_t: int,
    tr: float,
    amplitude: float,
    n_dummy: int = 2,
    n_spikes: int = 2,
    lesion: np.ndarray | None = None,
    lesion_noise: float = 0.0,
    lag: float = 0.0,
    motion_scale: float = 1.0,
    dynamics: str = "oscillation",
    shift: float = 0.0,
    dwell_range_s: tuple[float, float] = (40.0, 80.0),
    noise_scale: float = 1.0,
    info: dict | None = None,
) -> tuple[np.ndarray, pd.DataFrame, dict]:
    """One run: in-mask data (T, V) float32, confounds table and the CompCor JSON.

    With ``lesion`` (bool over the brain voxels) and ``lesion_noise`` > 0, the lesion holds no neural
    signal but a shared cavity artefact plus voxel noise, of SD ``lesion_noise`` x the lesion radius in
    cm; half the artefact leaks into a one-voxel ring around it (partial volume). ``lag`` (s) delays
    every signal of the lesioned hemisphere (|x| > 8 mm on the lesion's side), as hypoperfusion does.
    ``amplitude``, ``dynamics``, ``shift`` and ``dwell_range_s`` set the seed-target coupling
    (:func:`coupling_course`); what was drawn for it is added to ``info`` when given. ``noise_scale``
    multiplies the voxel noise (band-limited and white): a scanner's temporal SNR (see
    :data:`strokefc_sim.params.SITE_NOISE_RANGE`).
    """
    regions = _regions(mask_img, side)
    n_v = int(regions["seed"].size)
    glob = bandlimited(rng, n_t, 1, tr)[:, 0]
    motor = bandlimited(rng, n_t, 1, tr)[:, 0]
    seed_sig = bandlimited(rng, n_t, 1, tr)[:, 0]
    data = (W_NOISE_BL * noise_scale) * bandlimited(rng, n_t, n_v, tr, 0.005, 0.2).astype(np.float32)
    data += (W_NOISE_WHITE * noise_scale) * rng.standard_normal((n_t, n_v)).astype(np.float32)
    data += W_GLOBAL * glob[:, None].astype(np.float32)
    data[:, regions["motor"]] += W_MOTOR * motor[:, None].astype(np.float32)
    data[:, regions["seed"]] += W_SEED * seed_sig[:, None].astype(np.float32)
    coupling, coupling_info = coupling_course(
        rng, n_t, tr, amplitude, dynamics=dynamics, shift=shift, dwell_range_s=dwell_range_s
    )
    if info is not None:
        info.update(coupling_info)
    for name, sel in regions.items():
        if name in ("seed", "motor"):
            continue
        own = bandlimited(rng, n_t, int(sel.sum()), tr)  # voxel-specific remainder
        data[:, sel] += target_signal(coupling, seed_sig, own).astype(np.float32)
    if lag:
        territory = lag_territory(mask_img, side)
        data[:, territory] = delay(data[:, territory], lag, tr)
    if lesion is not None and lesion_noise > 0 and lesion.any():
        inside = np.asarray(mask_img.dataobj) > 0
        vol = np.zeros(inside.shape, bool)
        vol[inside] = lesion
        from scipy.ndimage import binary_dilation

        ring = (binary_dilation(vol) & ~vol)[inside]
        radius_cm = (3 * lesion.sum() * np.prod(mask_img.header.get_zooms()[:3]) / (4 * np.pi)) ** (
            1 / 3
        ) / 10
        artefact = lesion_noise * radius_cm * bandlimited(rng, n_t, 1, tr, 0.005, 0.2)[:, 0]
        data[:, lesion] = (
            artefact[:, None] + 0.5 * lesion_noise * rng.standard_normal((n_t, lesion.sum()))
        ).astype(np.float32)
        data[:, ring] += (0.5 * artefact[:, None]).astype(np.float32)
    params, deriv, fd = _motion(rng, n_t, tr, n_spikes, motion_scale)
    weights = rng.normal(0, 0.5, (6, n_v)).astype(np.float32)
    data += (params - params.mean(axis=0)).astype(np.float32) @ weights
    data[:n_dummy] += 3.0  # non-steady state
    conf = {}
    for i, name in enumerate(MOTION):
        conf[name] = params[:, i]
        conf[f"{name}_derivative1"] = deriv[:, i]
        conf[f"{name}_power2"] = params[:, i] ** 2
        conf[f"{name}_derivative1_power2"] = deriv[:, i] ** 2
    # fMRIPrep's tissue signals come from eroded WM and CSF masks, which hold no planted grey-matter
    # region: sample them among the other voxels. Sampled from all voxels, they held a few seed and
    # target voxels (a different handful per lesion side), and regressing them out removed part of the
    # planted dFC effect, by an amount that varied from run to run.
    quiet = np.flatnonzero(~np.logical_or.reduce(list(regions.values())))
    wm_sig = data[:, quiet[::97]].mean(axis=1)
    csf_sig = data[:, quiet[5::89]].mean(axis=1)
    for name, sig in (("global_signal", data.mean(axis=1)), ("white_matter", wm_sig), ("csf", csf_sig)):
        conf[name] = sig
        d = np.concatenate([[np.nan], np.diff(sig)])
        conf[f"{name}_derivative1"] = d
        conf[f"{name}_power2"] = sig**2
        conf[f"{name}_derivative1_power2"] = d**2
    fd = fd.copy()
    dvars = np.concatenate([[np.nan], np.sqrt((np.diff(data, axis=0) ** 2).mean(axis=1))])
    conf["framewise_displacement"] = np.concatenate([[np.nan], fd[1:]])
    conf["dvars"] = dvars
    conf["std_dvars"] = dvars / np.nanmedian(dvars)
    conf["rmsd"] = conf["framewise_displacement"] / 2
    # aCompCor: principal components of a random "WM+CSF" voxel sample, as fMRIPrep computes them.
    sample = data[:, quiet[::53]] - data[:, quiet[::53]].mean(axis=0)
    u, s, _ = np.linalg.svd(sample, full_matrices=False)
    var = s**2 / (s**2).sum()
    comp_json = {}
    for k in range(min(10, u.shape[1])):
        name = f"a_comp_cor_{k:02d}"
        conf[name] = u[:, k]
        comp_json[name] = {
            "Method": "aCompCor",
            "Mask": "combined",
            "SingularValue": float(s[k]),
            "VarianceExplained": float(var[k]),
            "CumulativeVarianceExplained": float(var[: k + 1].sum()),
            "Retained": True,
        }
    for k in range(4):
        conf[f"cosine{k:02d}"] = np.cos(np.pi * (k + 1) * (np.arange(n_t) + 0.5) / n_t)
    for k in range(n_dummy):
        col = np.zeros(n_t)
        col[k] = 1
        conf[f"non_steady_state_outlier{k:02d}"] = col
    table = pd.DataFrame(conf)
    return data, table, comp_json


def lag_territory(mask_img: nb.Nifti1Image, side: str) -> np.ndarray:
    """Brain voxels of the lesioned hemisphere more than 8 mm from the midline (bool over the voxels)."""
    inside = np.asarray(mask_img.dataobj) > 0
    x = nb.affines.apply_affine(mask_img.affine, np.argwhere(inside))[:, 0]
    return x < -8.0 if side == "L" else x > 8.0


def delay(series: np.ndarray, seconds: float, tr: float) -> np.ndarray:
    """Columns of ``series`` (T, N) delayed by ``seconds`` (a Fourier phase shift: any fraction of a TR)."""
    n_t = series.shape[0]
    freqs = np.fft.rfftfreq(n_t, tr)
    spec = np.fft.rfft(series, axis=0) * np.exp(-2j * np.pi * freqs * seconds)[:, None]
    return np.fft.irfft(spec, n=n_t, axis=0).astype(series.dtype)
