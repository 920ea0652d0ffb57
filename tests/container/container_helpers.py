"""Build the image with .ci/build_container.sh (Podman) and run it as the tests do."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = PROJECT_ROOT / ".ci" / "build_container.sh"
IMAGE = os.environ.get("BIDS_BRAINAGE_IMAGE", "localhost/bids_brainage:ci")
ARTIFACTS = PROJECT_ROOT / "test-artifacts" / "container"
# The options .ci/build_container.sh uses: runc and cgroupfs work in sandboxes where crun and
# systemd do not.
PODMAN = [*([] if os.geteuid() == 0 else ["sudo", "-n"]), "podman", "--runtime", "runc",
          "--cgroup-manager=cgroupfs"]  # fmt: skip
# podman asks for more open files and processes than a process without CAP_SYS_RESOURCE may
# have (runc: "error setting rlimit"): ask for what this process has, as the build script does.
_NOFILE = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
_NOFILE = 65536 if _NOFILE == resource.RLIM_INFINITY else _NOFILE
ULIMITS = ["--ulimit", f"nofile={_NOFILE}:{_NOFILE}", "--ulimit", "nproc=16384:16384"]
# UID:GID of the image's user (Dockerfile: USER 1000:1000).
USER = "1000:1000"


@dataclass
class Image:
    name: str
    build_seconds: int
    size_bytes: int
    torch: str


def build() -> Image:
    """Run the build script (cached layers: seconds when nothing changed); raise on failure."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    info = ARTIFACTS / "build.json"
    info.unlink(missing_ok=True)
    log = ARTIFACTS / "build.log"
    with log.open("w") as handle:
        result = subprocess.run(
            ["bash", str(BUILD_SCRIPT)],
            env={**os.environ, "BIDS_BRAINAGE_IMAGE": IMAGE, "BUILD_INFO": str(info)},
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    if result.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-30:])
        raise RuntimeError(f"{BUILD_SCRIPT.name} failed (exit {result.returncode}); end of {log}:\n{tail}")
    data = json.loads(info.read_text())
    return Image(data["image"], data["build_seconds"], data["size_bytes"], data["torch"])


@dataclass
class Run:
    returncode: int
    output: str
    seconds: float


def run_image(image: Image, args: list[str], mounts: dict[Path, str] = (), entrypoint: str | None = None,
              timeout: float = 1800) -> Run:  # fmt: skip
    """``podman run`` the image as its non-root user, without network, with a read-only root
    file system; ``mounts`` maps host folders to ``/path`` or ``/path:ro``."""
    command = [*PODMAN, "run", "--rm", *ULIMITS, "--network", "none", "--read-only", "--user", USER]
    for host, target in dict(mounts).items():
        command += ["--volume", f"{host}:{target}"]
    if entrypoint:
        command += ["--entrypoint", entrypoint]
    start = time.monotonic()
    result = subprocess.run([*command, image.name, *args], capture_output=True, text=True, timeout=timeout)
    return Run(result.returncode, result.stdout + result.stderr, time.monotonic() - start)


def writable_dir(path: Path) -> Path:
    """A host folder the image's user (UID 1000) can write to."""
    path.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        os.chown(path, 1000, 1000)
    else:
        path.chmod(0o777)
    return path


def record(name: str, **values) -> None:
    """Timings of the in-container runs, in test-artifacts/container/timings.json."""
    path = ARTIFACTS / "timings.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = values
    path.write_text(json.dumps(data, indent=2) + "\n")
