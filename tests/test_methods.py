"""The participant methods text is read from the workflow graph and follows every option."""

from dataclasses import replace

import pytest

from workflows.params import (
    DenoiseParams,
    QCParams,
    SeedParams,
    WindowParams,
    describe_duration,
    parse_duration,
)
from workflows.participant import describe_participant, init_dfc_wf

DEFAULTS = {"denoise": DenoiseParams(), "seed": SeedParams(), "window": WindowParams(), "qc": QCParams()}


def _text(**changes) -> str:
    params = dict(DEFAULTS)
    for step, fields in changes.items():
        params[step] = replace(params[step], **fields)
    return describe_participant(**params)


def test_default_text_names_every_step():
    text = _text()
    for needle in (
        "non-steady-state volumes",
        "6 mm FWHM",
        "`simple`",
        "24 head-motion parameters",
        "high-pass 0.01 Hz, low-pass 0.08 Hz",
        "z-scored over the kept volumes",
        "fewer than 240 s",
        "0.55 mm",
        "fewer than 5 valid windows",
        "+/- 6 s",
        "more than 1 s were flagged",
        "HCPEx atlas",
        "sliding windows of 44 s",
        "rectangular",
        "moved by 1 volume(s)",
        "Pearson correlation over the window's kept volumes",
        "less than 80% of their taper weight on kept volumes were dropped",
        "50 multivariate phase-randomised surrogates",
        "`stat-dfcexcess`",
        "runs of one session were averaged",
    ):
        assert needle in text, needle
    assert "one step" not in text
    assert "were censored" not in text  # "simple" censors nothing


def test_text_is_the_graphs():
    wf = init_dfc_wf(
        tr=2.0,
        lesion_side="R",
        output_dir=".",
        fmriprep_dir=".",
        static_meta={},
        **{**DEFAULTS, "window": WindowParams(window_length="30vol")},
    )
    assert wf.__desc__ in _text(window={"window_length": "30vol"})


@pytest.mark.parametrize(
    ("changes", "present", "absent"),
    [
        (
            {"window": {"window_shape": "hamming", "window_estimator": "tapered-series"}},
            ["Hamming", "series multiplied by the window's taper"],
            ["sample weights"],
        ),
        ({"window": {"window_shape": "hamming"}}, ["taper as sample weights"], ["series multiplied"]),
        ({"window": {"null_surrogates": 0}}, ["No stationary null"], ["phase-randomised"]),
        ({"window": {"null_surrogates": 10}}, ["10 multivariate phase-randomised surrogates"], ["50 multi"]),
        ({"window": {"min_window_coverage": 0.5}}, ["less than 50% of their taper weight"], ["80%"]),
        ({"window": {"window_length": "30vol"}}, ["sliding windows of 30 volumes"], ["44 s"]),
        ({"window": {"window_length": "60s"}}, ["sliding windows of 60 s"], ["44 s"]),
        ({"window": {"window_length": "45"}}, ["sliding windows of 45 s"], ["44 s"]),
        ({"window": {"window_step": 3}}, ["moved by 3 volume(s)"], ["moved by 1 "]),
        ({"window": {"save_windows": True}}, ["map of every window"], []),
        (
            {"denoise": {"strategy": "scrubbing", "fd_thresh": 0.3}},
            ["`scrubbing`", "framewise displacement above 0.3 mm", "were censored"],
            ["`simple`"],
        ),
        ({"denoise": {"strategy": "simple+gsr"}}, ["global signal"], []),
        (
            {"denoise": {"strategy": "compcor+lesion", "lesion_components": 3}},
            [
                "`compcor+lesion`",
                "CompCor components: those fMRIPrep retained",
                "first 3 principal components",
            ],
            ["{k}"],
        ),
        ({"denoise": {"strategy": "compcor", "n_compcor": 5}}, ["CompCor components: the first 5"], []),
        ({"denoise": {"smoothing_fwhm": None}}, ["not spatially smoothed"], ["FWHM"]),
        ({"denoise": {"high_pass": None, "low_pass": None}}, ["no temporal filter"], ["Butterworth"]),
        ({"denoise": {"dummy_scans": 4}}, ["first 4 volumes were discarded"], ["non-steady-state"]),
        (
            {"qc": {"max_mean_fd": None, "lag_search": 8.0}},
            ["+/- 8 s"],
            ["mean framewise displacement above"],
        ),
        (
            {"seed": {"seed_coords": (-38.0, -22.0, 56.0)}},
            ["sphere of radius 6 mm centred at (-38, -22, 56)"],
            [],
        ),
    ],
)
def test_text_follows_each_option(changes, present, absent):
    text = _text(**changes)
    for needle in present:
        assert needle in text, needle
    for needle in absent:
        assert needle not in text, needle


def test_combined_sessions_are_described():
    params = dict(DEFAULTS)
    assert "one subject (all sessions together)" in describe_participant(**params, combine_sessions=True)


@pytest.mark.parametrize(
    ("value", "words", "volumes"), [("60s", "60 s", 30), ("30vol", "30 volumes", 30), ("45", "45 s", 22)]
)
def test_duration_words_read_the_value_as_parse_duration(value, words, volumes):
    assert describe_duration(value) == words
    assert parse_duration(value, tr=2.0) == volumes
