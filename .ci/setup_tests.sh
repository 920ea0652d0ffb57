#!/usr/bin/env bash
# Everything the test suite needs besides the Python packages, in one idempotent step, so the
# README's test command and CI do the same set-up:
#   - a single-node SLURM cluster on localhost (tests/hpc): Debian's slurm-wlm and munge
#   - headless Chromium (tests/reports): Debian's chromium
#   - Podman and a local Debian bookworm base image (tests/container, which builds the app's
#     image from it): Debian's podman, runc and debootstrap; 1-2 minutes once
# Needs root or sudo (apt-get, daemons) and the Debian package archive; about 2-4 minutes on
# a fresh machine, a few seconds when everything is already there.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
bash "$here/setup_slurm.sh"
bash "$here/setup_chromium.sh"
bash "$here/build_container.sh" --setup-only
