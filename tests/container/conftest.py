"""The image, built from this tree with .ci/build_container.sh (Podman), once per session.

The build is cached layer by layer in Podman's store, so building again with unchanged
sources takes seconds and the tests always run the image of the checked-out code. A missing
``podman`` is a failure, not a skip: the README's test command installs it
(``.ci/setup_tests.sh``).
"""

from __future__ import annotations

import shutil

import pytest
from container_helpers import Image, build


@pytest.fixture(scope="session")
def image() -> Image:
    if shutil.which("podman") is None:
        pytest.fail("podman not found: run .ci/setup_tests.sh (or .ci/build_container.sh --setup-only) first")
    try:
        return build()
    except RuntimeError as err:
        pytest.fail(str(err))
