"""Every TSV strokefc writes has a sidecar describing each column (one dictionary: workflows.columns)."""

import json

import pytest

from workflows.activation_patterns import PATTERN_COLUMNS
from workflows.columns import describe_column, tsv_sidecar
from workflows.decision_curve import DECISION_COLUMNS
from workflows.explain import REGION_COLUMNS
from workflows.group_inputs import COHORT_COLUMNS
from workflows.learning_curve import LEARNING_COLUMNS
from workflows.models import CONFOUND_FEATURES
from workflows.qc import QC_COLUMNS, QC_SIDECAR

TABLES = {
    "seed": ["seed", "kept"],
    "windows": [
        "start_volume",
        "end_volume",
        "onset_s",
        "kept_volumes",
        "coverage",
        "valid",
        "z_contraM1",
        "z_ipsiSMA",
        "z_ipsiThalamus",
    ],
    "design": [
        "csf",
        "white_matter_nolesion",
        "rot_x_derivative1_power2",
        "trans_z",
        "a_comp_cor_03",
        "cosine00",
        "lesion_mean",
        "lesion_comp_cor_01",
        "ica_lesion_2",
        "motion_outlier04",
    ],
    "qc": list(QC_COLUMNS),
    "cohort": list(COHORT_COLUMNS) + list(CONFOUND_FEATURES),
    "cv_predictions": ["participant_id", "repeat", "fold", "model", "y_true", "prob_severe"],
    "training_curves": ["repeat", "fold", "epoch", "train_loss", "val_loss"],
    "learning_curves": [*LEARNING_COLUMNS, "mae"],
    "decision_curves": list(DECISION_COLUMNS),
    "saliency_regions": list(REGION_COLUMNS),
    "parcel_patterns": list(PATTERN_COLUMNS),
    "predictions": [
        "participant_id",
        "session",
        "prob_severe",
        "predicted_class",
        "decision_threshold",
        "label_definition",
        "lesion_side",
        "map_file",
        "model_cv_balanced_accuracy",
        "model_dir",
        "model_id",
        "ul_fma_true",
        "class_true",
        "resampled",
        "source_voxel_size_mm",
        "model_source_voxel_size_mm",
        "grid_coverage",
        "resampling",
        "target",
        "predicted_ul_fma",
        "model_cv_mae",
        "model_type",
        "calibrated",
        "in_training",
        "validation_note",
    ],
    "cv_predictions_regression": ["participant_id", "repeat", "fold", "model", "y_true", "predicted_score"],
}


@pytest.mark.parametrize("table", sorted(TABLES))
def test_every_column_of_every_table_is_described(table):
    sidecar = tsv_sidecar(TABLES[table], "a table", strict=True)
    assert sidecar["Description"] == "a table"
    for column in TABLES[table]:
        assert sidecar[column]["Description"], column
    json.dumps(sidecar)  # JSON-able


def test_units_follow_the_names_and_unknown_columns_are_flagged():
    assert describe_column("retained_time_s")["Units"] == "s"
    assert describe_column("mean_fd_mm")["Units"] == "mm"
    assert describe_column("z_ipsiSMA")["Units"] == "Fisher z"
    assert QC_SIDECAR["lesion_volume_ml"]["Units"] == "ml"
    with pytest.raises(KeyError, match="no_such_column"):
        tsv_sidecar(["no_such_column"], strict=True)
    assert tsv_sidecar(["no_such_column"])["no_such_column"]["Description"] == "undocumented column"
