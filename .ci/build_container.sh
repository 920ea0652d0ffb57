#!/usr/bin/env bash
# Build the bids_brainage image with Podman, from the repository's Dockerfile, where no public
# image registry is reachable (CI, this project's machines):
#   1. installs podman, runc and debootstrap from Debian's archive when absent (root or sudo);
#   2. makes the base image (Debian bookworm + python3 3.11 + python3-venv, with debootstrap)
#      when absent: the stand-in for python:3.11-slim-bookworm, passed as BASE_IMAGE;
#   3. builds the image; torch comes from a local folder of CPU wheels when pip is pointed at
#      one (pip config find-links / PIP_FIND_LINKS, or TORCH_WHEEL_DIR), mounted into the build
#      at /wheels; everything else from PyPI (through the CA bundle pip uses here, if any).
# Layers are cached in Podman's store: a second run with unchanged sources takes seconds.
#
# Usage: .ci/build_container.sh [--setup-only]
#   --setup-only   steps 1 and 2 only (what .ci/setup_tests.sh runs)
# Environment: BIDS_BRAINAGE_IMAGE (default localhost/bids_brainage:ci),
#   BIDS_BRAINAGE_BASE_IMAGE (default localhost/bids_brainage-base:bookworm),
#   DEBIAN_MIRROR (default http://deb.debian.org/debian), TORCH_WHEEL_DIR, TORCH_VERSION, PIP_CERT,
#   BUILD_INFO (a file for the build time and image size as JSON), CONTAINER_SETUP_SKIP=1.
# Podman runs as root here with runc and cgroupfs (crun and systemd do not work in every
# sandbox) and explicit --ulimit values: the same options as tests/container use.
set -euo pipefail
[ "${CONTAINER_SETUP_SKIP:-0}" = 1 ] && exit 0
root="$(cd "$(dirname "$0")/.." && pwd)"
IMAGE="${BIDS_BRAINAGE_IMAGE:-localhost/bids_brainage:ci}"
BASE="${BIDS_BRAINAGE_BASE_IMAGE:-localhost/bids_brainage-base:bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
TORCH_VERSION="${TORCH_VERSION:-2.13.0}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
PODMAN=($SUDO podman --runtime runc --cgroup-manager=cgroupfs)
# podman run asks for more open files and processes than a process without CAP_SYS_RESOURCE
# may have (runc: "error setting rlimit"): ask for at most what this shell has.
hard_nofile=$(ulimit -Hn); [ "$hard_nofile" = unlimited ] && hard_nofile=65536
ULIMITS=(--ulimit "nofile=$hard_nofile:$hard_nofile" --ulimit nproc=16384:16384)
log() { echo "build_container.sh: $*" >&2; }

# 1. Packages
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt="$SUDO apt-get -o DPkg::Lock::Timeout=600 -y -qq"  # wait for other apt runs
    $apt update
    # with podman's recommended packages (netavark, catatonit, ...), as a plain install has them
    $apt install podman runc debootstrap >/dev/null
fi

# 2. Base image: minimal Debian bookworm with Python 3.11 (about 40 s, once per machine)
if ! "${PODMAN[@]}" image exists "$BASE"; then
    log "making the base image $BASE with debootstrap from $MIRROR"
    rootfs="$(mktemp -d "${TMPDIR:-/tmp}/bids_brainage_base.XXXXXX")"
    trap '$SUDO rm -rf "$rootfs"' EXIT
    $SUDO debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { tail -n 20 "$rootfs.log" >&2; exit 1; }
    rm -f "$rootfs.log"
    # What the slim Python images leave out as well: package caches, lists, docs, man pages.
    $SUDO rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
        "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    $SUDO tar -C "$rootfs" -c . | "${PODMAN[@]}" import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' - "$BASE" >/dev/null
    $SUDO rm -rf "$rootfs"
    trap - EXIT
fi
[ "${1:-}" = "--setup-only" ] && { log "podman and $BASE ready"; exit 0; }

# 3. The image
build_args=(--build-arg "BASE_IMAGE=$BASE" --build-arg "TORCH_VERSION=$TORCH_VERSION")
wheel_dir="${TORCH_WHEEL_DIR:-}"
# A setting of pip's here, from every place pip reads them (its config files and PIP_* variables).
pip_setting() { python3 -m pip config list 2>/dev/null | sed -n "s/^[^=]*\.$1='\(.*\)'\$/\1/p" | head -n1; }
if [ -z "$wheel_dir" ]; then  # a find-links folder of pip's with the CPU wheel of torch
    for dir in $(pip_setting find-links); do
        if compgen -G "$dir/torch-${TORCH_VERSION}+cpu-*.whl" >/dev/null; then wheel_dir="$dir"; break; fi
    done
fi
volumes=()
if [ -n "$wheel_dir" ]; then
    log "torch $TORCH_VERSION from the CPU wheel in $wheel_dir"
    volumes=(--volume "$wheel_dir:/wheels:ro")
    build_args+=(--build-arg PIP_FIND_LINKS=/wheels --build-arg TORCH_INDEX_URL=https://pypi.org/simple)
fi
# A TLS-intercepting proxy between the build and PyPI: pip inside trusts what pip here trusts.
cert="${PIP_CERT:-$(pip_setting cert)}"
if [ -n "$cert" ] && [ -f "$cert" ]; then
    volumes+=(--volume "$cert:/etc/ssl/pip-ca.crt:ro")
    build_args+=(--build-arg PIP_CERT=/etc/ssl/pip-ca.crt)
fi
version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' "$root/bids_brainage/__init__.py")"
build_args+=(--build-arg "VERSION=$version"
             --build-arg "VCS_REF=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
             --build-arg "BUILD_DATE=$(git -C "$root" log -1 --format=%cI 2>/dev/null || echo unknown)")
log "building $IMAGE"
start=$(date +%s)
# The build (not the runs) may reach PyPI and Debian's archive: host network.
old_id=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
"${PODMAN[@]}" build --network host --layers "${volumes[@]}" "${build_args[@]}" -t "$IMAGE" "$root"
seconds=$(( $(date +%s) - start ))
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
torch=$("${PODMAN[@]}" run --rm --network none "${ULIMITS[@]}" --entrypoint python "$IMAGE" -c 'import torch; print(torch.__version__)')
# The previous image of this tag, now untagged (its cached layers stay while still in use).
new_id=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$old_id" ] && [ "$old_id" != "$new_id" ]; then
    "${PODMAN[@]}" rmi "$old_id" >/dev/null 2>&1 || true
fi
log "built $IMAGE in ${seconds} s: $(( size / 1000000 )) MB, torch $torch"
if [ -n "${BUILD_INFO:-}" ]; then
    mkdir -p "$(dirname "$BUILD_INFO")"
    printf '{"image": "%s", "build_seconds": %d, "size_bytes": %d, "torch": "%s"}\n' \
        "$IMAGE" "$seconds" "$size" "$torch" >"$BUILD_INFO"
fi
