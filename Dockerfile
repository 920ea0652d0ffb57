# bids_brainage container: CPU build by default, CUDA build with --build-arg TORCH_VARIANT=cu128.
#   docker build -t bids_brainage:latest .
#   docker build --build-arg TORCH_VARIANT=cu128 -t bids_brainage:latest-cuda .
#   docker run --rm -v /data/bids:/data:ro -v /data/out:/out bids_brainage:latest /data /out participant
# Another base or package source (an offline mirror, CI): see docs/containers.md and
# .ci/build_container.sh, which builds this file from a debootstrapped Debian bookworm.

ARG PYTHON_VERSION=3.11
# Any Debian bookworm image with python3 (3.11), python3-venv and CA certificates will do.
ARG BASE_IMAGE=python:${PYTHON_VERSION}-slim-bookworm

# ---- build stage: wheels and the virtual environment -------------------------------------
FROM ${BASE_IMAGE} AS builder
# cpu (default) or a CUDA tag of the PyTorch index, e.g. cu128
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
# Where torch comes from (default: the PyTorch index of the chosen variant).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT}
# pip's own settings: the index for everything else (PIP_INDEX_URL), a folder of wheels
# searched as well (PIP_FIND_LINKS) and a CA bundle (PIP_CERT, behind a TLS-inspecting proxy),
# the last two empty by default; folders and files can be mounted with podman build --volume.
ARG PIP_INDEX_URL=https://pypi.org/simple
ARG PIP_FIND_LINKS=
ARG PIP_CERT=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first, from the PyTorch index of the chosen variant; then the app's dependencies from
# PyPI (through a stub package: this layer, and the venv copied into the runtime stage, stay
# cached while only the code changes); then the app itself as a wheel.
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY bids_brainage/__init__.py ./bids_brainage/
# pip byte-compiles what it installs. Any UID must be able to run the venv: a+rX, applied
# only where missing (a chmod of every file would copy the whole venv into a new layer).
RUN pip install "torch==${TORCH_VERSION}" . \
    && find /opt/venv \( ! -perm -a+r -o \( -perm -u+x ! -perm -a+x \) \) -exec chmod a+rX {} +
COPY bids_brainage ./bids_brainage
RUN pip wheel --no-deps --wheel-dir /src/dist .

# ---- runtime stage: slim Python, the venv, a non-root user ---------------------------------
FROM ${BASE_IMAGE} AS runtime

# libgomp: OpenMP runtime for ITK/antspyx and torch; procps: ps for nipype's resource checks.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1=12.* procps=2:4.* \
    && apt-get clean \
    && rm -rf /var/lib/apt/lists/*

# Non-root user. Singularity runs as the calling UID, so everything stays readable (and
# the home writable) by any UID; matplotlib/nilearn caches go to a writable home.
RUN useradd --create-home --home-dir /home/brainage --uid 1000 --shell /bin/bash brainage \
    && mkdir -p /work \
    && chmod 1777 /work /home/brainage

# The venv with every dependency, readable by any UID (made so in the build stage); then the
# app's wheel over the stub, a layer of a few hundred kB.
COPY --from=builder /opt/venv /opt/venv
# (COPY, not RUN --mount: Podman's layer cache does not see a changed mounted file.)
COPY --from=builder /src/dist /tmp/dist
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --force-reinstall \
        /tmp/dist/bids_brainage-*.whl \
    && rm -rf /tmp/dist

ENV PATH=/opt/venv/bin:$PATH \
    HOME=/home/brainage \
    MPLCONFIGDIR=/tmp/brainage_matplotlib \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1 \
    ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS=1 \
    BIDS_BRAINAGE_CACHE=/opt/bids_brainage_cache \
    BIDS_BRAINAGE_CONTAINER=docker

# Pre-warm: load every template and atlas once at build time (from the installed wheels,
# no download), so a missing data file fails the build instead of a job. The template images
# ANTs reads (every MNI template and tissue map, 1 and 2 mm) go into $BIDS_BRAINAGE_CACHE,
# which the (read-only) image then serves to every run instead of each step rebuilding them.
RUN python -c "from bids_brainage import templates as t; import bids_brainage.compute.anat_ops as ops; \
[ops.template_file(k, r, '/tmp') for r in (1, 2) for k in ('head', 'mask', 'brain', 'GM', 'WM', 'CSF')]; \
t.desikan_killiany(); [t.coord_atlas(a) for a in t.COORD_ATLASES]" \
    && test -n "$(ls -A "$BIDS_BRAINAGE_CACHE")" && bids_brainage --version

# Labels last: a new commit or date changes only these metadata layers, not the cached ones.
ARG VERSION=unknown
ARG VCS_REF=unknown
ARG BUILD_DATE=unknown
ARG TORCH_VARIANT=cpu
LABEL org.opencontainers.image.title="bids_brainage" \
      org.opencontainers.image.description="BIDS App: brain age from T1w and resting-state fMRI (SA-AVAE)" \
      org.opencontainers.image.url="https://github.com/bids-brainage/bids_brainage" \
      org.opencontainers.image.source="https://github.com/bids-brainage/bids_brainage" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${VCS_REF}" \
      org.opencontainers.image.created="${BUILD_DATE}" \
      org.opencontainers.image.variant="${TORCH_VARIANT}"
ENV BIDS_BRAINAGE_CONTAINER_TAG=${VERSION}

USER 1000:1000
WORKDIR /work
ENTRYPOINT ["bids_brainage"]
CMD ["--help"]
