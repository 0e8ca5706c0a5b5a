"""Run options as one frozen value, built by the CLI and passed down explicitly (no global state)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

#: ``--dfc-preset`` values: window length, step and shape from the tools and papers they name.
DFC_PRESETS = {
    # DPABI Temporal Dynamic Analysis: 30-TR Hamming window, step 1 TR.
    "dpabi": {"window_length": "30vol", "window_step": 1, "window_shape": "hamming"},
    # DynamicBC: 50-TR rectangular window, 60% overlap (step 20 TRs).
    "dynamicbc": {"window_length": "50vol", "window_step": 20, "window_shape": "rectangular"},
    # Allen et al. 2014: 22-TR rectangle convolved with a Gaussian (sigma 3 TRs), step 1 TR.
    "allen": {"window_length": "22vol", "window_step": 1, "window_shape": "tapered"},
}


@dataclass(frozen=True)
class RunConfig:
    """Every option of a strokefc run (see ``strokefc --help`` for their meaning)."""

    bids_dir: Path
    output_dir: Path
    analysis_level: str
    fmriprep_dir: Path
    work_dir: Path
    participant_label: tuple[str, ...] = ()
    # BIDS queries
    task_id: str = "rest"
    space: str = "MNI152NLin2009cAsym"
    res: str | None = None
    bids_filters: dict = field(default_factory=dict, hash=False)
    lesion_column: str = "lesion_hemisphere"
    label_column: str = "ul_fma"
    lesion_dir: Path | None = None
    skip_bids_validation: bool = False
    # denoising
    denoise: str = "simple"
    fd_thresh: float = 0.5
    std_dvars_thresh: float = 1.5
    n_compcor: int | str = "all"
    dummy_scans: int | str = "auto"
    high_pass: float | None = 0.01
    low_pass: float | None = 0.08
    smoothing: float | None = 6.0
    # seed
    seed_mask: Path | None = None
    seed_coords: tuple[float, float, float] | None = None
    seed_radius: float = 6.0
    seed_atlas: str = "HCPEx"
    # dFC
    window_length: str = "60s"
    window_step: int = 1
    window_shape: str = "rectangular"
    min_window_coverage: float = 0.8
    save_windows: bool = False
    # prediction and group level
    model: Path | None = None
    severe_threshold: float = 20.0
    allow_missing_labels: bool = False
    align_lesion: bool = True
    cnn_resolution: float = 3.0
    samples: str = "maps"
    task: str = "classification"
    cv_folds: int = 5
    cv_repeats: int = 5
    n_permutations: int = 0
    epochs: int = 40
    device: str = "auto"
    random_seed: int = 0
    # performance
    nprocs: int = 1
    omp_nthreads: int = 1
    mem_gb: float | None = None
    use_plugin: Path | None = None
    verbose: int = 0
    boilerplate_only: bool = False

    def to_dict(self) -> dict:
        """JSON-able view (paths as strings), for sidecars, logs and the methods text."""
        out = {}
        for key, value in asdict(self).items():
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[key] = value
        return out
