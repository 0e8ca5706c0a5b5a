"""The Docker image for real: scripts/container-test builds it with podman (from a debootstrapped Debian
base) and runs participant then group level on a generated cohort, as a non-root user, with a read-only
root file system, the input mounted read-only and no network.

Marked ``container``: runs in CI (CI=true) or with STROKEFC_SLOW_TESTS=1. The first build takes a while
(base rootfs cached in ~/.cache/strokefc, layers in podman's store).
"""

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from helpers import IMAGE, IMAGE_BUILD, IN_CI, NO_QC

pytestmark = pytest.mark.container

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "container-test"
PODMAN = [str(SCRIPT), "podman"]  # podman with the script's own storage (overlay, or vfs)


def _need_podman():
    if shutil.which("podman") is None or shutil.which("debootstrap") is None:
        reason = "podman/debootstrap missing: run scripts/install-system-deps"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def image():
    """Build (or refresh: cached layers make a rebuild quick) the image, or wait for the build that
    conftest.py started in the background at the start of the session."""
    _need_podman()
    started = os.environ.get(IMAGE_BUILD)
    if started:
        rc, deadline = Path(started) / "rc", time.monotonic() + 3600
        while not rc.exists():
            assert time.monotonic() < deadline, f"the image build in {started} took over an hour"
            time.sleep(2)
        log = (Path(started) / "log").read_text()
        assert rc.read_text().strip() == "0", f"image build failed (log: {started}/log)\n{log[-5000:]}"
        return IMAGE
    proc = subprocess.run([str(SCRIPT), "build"], capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-5000:]
    return IMAGE


def _inspect(image):
    proc = subprocess.run([*PODMAN, "image", "inspect", image], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout)[0]


def test_image_metadata(image):
    info = _inspect(image)
    config = info["Config"]
    assert config["Entrypoint"] == ["strokefc"]
    assert config["User"] == "1000:1000"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "strokefc"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["TEMPLATEFLOW_HOME"] == "/opt/templateflow"
    assert env["MPLCONFIGDIR"].startswith("/tmp/")


def test_image_has_cpu_torch_and_a_non_editable_install(image):
    code = (
        "import torch, bids_app, workflows, pathlib; "
        "print(torch.__version__, torch.cuda.is_available()); "
        "print(pathlib.Path(bids_app.__file__).parent); print(pathlib.Path(workflows.__file__).parent)"
    )
    proc = subprocess.run(
        [
            *PODMAN,
            "run",
            "--rm",
            "--runtime",
            "runc",
            "--cgroup-manager=cgroupfs",
            # podman's default rlimits exceed what this kind of host allows runc to set
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
            "--read-only",
            "--network",
            "none",
            "--entrypoint",
            "python3",
            image,
            "-c",
            code,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    version, bids_app_dir, workflows_dir = proc.stdout.split("\n")[:3]
    assert version.startswith("2.13.0+cpu")
    assert bids_app_dir.startswith("/opt/venv/lib/python3.11/site-packages/")
    assert workflows_dir.startswith("/opt/venv/lib/python3.11/site-packages/")


#: The run step's cohort and options: the image's wiring (users, mounts, every model), not what the models
#: learn: short runs with the exclusion rules off, no stationary null, the CNN on the maps' own 4 mm grid.
N_SUBJECTS = 6
RUN_ENV = {
    "N_SUBJECTS": str(N_SUBJECTS),
    "N_VOLUMES": "120",
    "PARTICIPANT_ARGS": " ".join(("--null-surrogates", "0", *NO_QC)),
    "GROUP_ARGS": "--cnn-resolution 4",
}


def test_participant_and_group_levels_run_in_the_image(image, tmp_path):
    """The script's run step: simulate 6 subjects, participant then group level as uid 1234, input ro."""
    env = dict(os.environ, CONTAINER_TEST_DIR=str(tmp_path), IMAGE=image, **RUN_ENV)
    proc = subprocess.run([str(SCRIPT), "run"], capture_output=True, text=True, env=env, timeout=3600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-6000:]
    assert "strokefc" in proc.stdout  # --version
    out = tmp_path / "out"
    maps = sorted(out.glob("sub-*/func/*_stat-dfcsd_boldmap.nii.gz"))
    assert len(maps) == N_SUBJECTS
    assert len(list(out.glob("sub-*.html"))) == N_SUBJECTS
    # Everything written belongs to the container's user; the read-only input was not touched.
    assert {p.stat().st_uid for p in out.rglob("*")} == {1234}
    newest_input = max(p.stat().st_mtime for p in (tmp_path / "bids").rglob("*"))
    assert newest_input <= min(p.stat().st_mtime for p in maps)
    summary = json.loads((out / "group" / "cv_summary.json").read_text())
    assert summary["n_subjects"] == N_SUBJECTS
    assert set(summary["models"]) == {
        "parcel",
        "cnn",
        "parcel_l1",
        "parcel_enet",
        "motor_prior",
        "baseline",
        "parcel_fc",
        "parcel_dfcmean",
        "confounds",
        "clinical",  # participants.tsv has the age column and the maps a lesion volume
    }
    assert any((out / "model").iterdir()), "the group level exported no model"
