"""Derivative file names, sidecars and the derivative dataset skeleton (fMRIPrep/XCP-D style).

All writes here are atomic and idempotent so many participant jobs (a SLURM array) can
share one OUTPUT_DIR without corrupting ``dataset_description.json`` or ``.bidsignore``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from bids_brainage import __version__
from bids_brainage.utils import atomic

PIPELINE_NAME = "bids_brainage"
CODE_URL = "https://github.com/bids-brainage/bids_brainage"
BIDS_VERSION = "1.10.0"

# BIDS entity order for the names this app writes (a subset of the specification's table).
ENTITY_ORDER = (
    "sub", "ses", "task", "acq", "ce", "rec", "dir", "run", "echo",
    "space", "atlas", "seg", "res", "den", "label", "stat", "from", "to", "mode", "desc",
)  # fmt: skip

# File kinds the BIDS schema (1.10, bids-validator-deno) has no rule for; each entry's reason
# is in docs/outputs.md (".bidsignore"). Everything else this app writes is validated.
BIDSIGNORE = (
    "*.html",  # reports
    "*/figures",  # SVG reportlets (the validator matches folders without a trailing slash)
    "*/log",  # nipype crash files of a participant
    "*_xfm.*",  # transforms (BEP014 names, as fMRIPrep writes them)
    "*_boldref.*",  # BOLD reference (fMRIPrep name, BEP012)
    "*_timeseries.*",  # confounds, head motion and ROI time series (fMRIPrep/XCP-D, BEP012)
    "*_outliers.*",  # censoring mask (XCP-D)
    "*_relmat.*",  # connectivity matrices (XCP-D, BEP017)
    "*_qc.*",  # run QC (XCP-D-style)
    "*_features.*",  # model inputs
    "*_prediction.*",  # per-participant brain age
    "brainage.*",  # group brain-age table
    "group",  # group tables and figures
    "model",  # trained model bundle
)  # logs/ needs no entry: BIDS reserves it for log files

#: ``DatasetLinks`` of the templates that sidecars cite as ``bids:<name>:`` URIs (the
#: TemplateFlow dataset of the same name; nilearn ships the copy that is used, offline).
TEMPLATE_LINKS = {"MNI152NLin2009aSym": "https://github.com/templateflow/tpl-MNI152NLin2009aSym"}

_LABEL_RE = re.compile(r"^[0-9A-Za-z]+$")


def check_label(value: str, entity: str = "sub") -> str:
    """Return ``value`` without a ``sub-``/``ses-`` prefix; refuse anything but ``[0-9A-Za-z]+``.

    Called on every label that comes from user input before it is used in a path, so a
    label like ``../x`` or ``a/b`` can never escape OUTPUT_DIR.
    """
    value = str(value)
    if value.startswith(f"{entity}-"):
        value = value[len(entity) + 1 :]
    if not _LABEL_RE.match(value):
        raise ValueError(f"invalid {entity} label {value!r}: only letters and digits [0-9A-Za-z] are allowed")
    return value


def bids_name(suffix: str, extension: str, **entities: str | None) -> str:
    """Build a BIDS file name from entities in canonical order.

    >>> bids_name("T1w", ".nii.gz", sub="01", desc="preproc")
    'sub-01_desc-preproc_T1w.nii.gz'
    """
    unknown = set(entities) - set(ENTITY_ORDER)
    if unknown:
        raise ValueError(f"unknown BIDS entities: {sorted(unknown)}")
    parts = []
    for key in ENTITY_ORDER:
        value = entities.get(key)
        if value is None or value == "":
            continue
        if key in ("sub", "ses"):
            value = check_label(value, key)
        parts.append(f"{key}-{value}")
    return "_".join(parts + [suffix]) + extension


def derivative_path(
    output_dir: str | os.PathLike,
    datatype: str | None,
    suffix: str,
    extension: str,
    **entities: str | None,
) -> Path:
    """Path of a derivative: ``OUTPUT_DIR/sub-X[/ses-Y]/DATATYPE/<name>``.

    Reportlets (``datatype="figures"``) go to ``OUTPUT_DIR/sub-X/figures/<name>`` for every
    session (the session stays in the name), as fMRIPrep and XCP-D keep them.
    """
    sub = check_label(entities["sub"], "sub")
    folder = Path(output_dir) / f"sub-{sub}"
    if entities.get("ses") and datatype != "figures":
        folder = folder / f"ses-{check_label(entities['ses'], 'ses')}"
    if datatype:
        folder = folder / datatype
    return folder / bids_name(suffix, extension, **entities)


def bids_uri(path: str | os.PathLike, root: str | os.PathLike, dataset: str = "raw") -> str:
    """BIDS URI of ``path`` inside dataset ``root`` (e.g. ``bids:raw:sub-01/anat/sub-01_T1w.nii.gz``)."""
    # The file name is kept (not resolved): DataLad/git-annex files are symlinks to annex keys.
    path = Path(os.path.abspath(path)).parent.resolve() / Path(path).name
    rel = Path(os.path.relpath(path, Path(root).resolve())).as_posix()
    return f"bids:{dataset}:{rel}"


def sidecar_path(path: str | os.PathLike) -> Path:
    """The JSON sidecar path for a data file (``.nii.gz``, ``.tsv``, ...)."""
    path = Path(path)
    name = path.name
    for ext in (".nii.gz", ".tsv.gz", ".nii", ".tsv", ".h5", ".txt", ".mat", ".svg", ".json"):
        if name.endswith(ext):
            return path.with_name(name[: -len(ext)] + ".json")
    return path.with_suffix(".json")


def write_sidecar(path: str | os.PathLike, metadata: dict[str, Any]) -> Path:
    """Atomically write the JSON sidecar of ``path``."""
    return atomic.write_json(sidecar_path(path), metadata)


def container_info() -> dict[str, str] | None:
    """Container type and tag when running in our Docker/Singularity image (set by the recipes)."""
    if os.environ.get("BIDS_BRAINAGE_CONTAINER"):
        info = {"Type": os.environ["BIDS_BRAINAGE_CONTAINER"]}
        if os.environ.get("BIDS_BRAINAGE_CONTAINER_TAG"):
            info["Tag"] = os.environ["BIDS_BRAINAGE_CONTAINER_TAG"]
        return info
    if os.environ.get("SINGULARITY_CONTAINER") or os.environ.get("APPTAINER_CONTAINER"):
        return {"Type": "singularity"}
    return None


def dataset_description(
    bids_dir: str | os.PathLike | None, links: dict[str, str | os.PathLike] | None = None
) -> dict[str, Any]:
    """The derivative dataset's ``dataset_description.json`` content.

    ``DatasetLinks`` resolves every ``bids:<name>:`` URI that the sidecars use: ``raw`` (the
    input dataset), the templates (:data:`TEMPLATE_LINKS`) and ``links`` (e.g. ``fmriprep``: a
    reused derivative folder).
    """
    generated: dict[str, Any] = {"Name": PIPELINE_NAME, "Version": __version__, "CodeURL": CODE_URL}
    container = container_info()
    if container:
        generated["Container"] = container
    desc: dict[str, Any] = {
        "Name": "bids_brainage outputs",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "HowToAcknowledge": "Please cite bids_brainage and the tools listed in logs/CITATION.md.",
    }
    dataset_links: dict[str, str] = {}
    if bids_dir is not None:
        desc["SourceDatasets"] = [{"URL": Path(bids_dir).resolve().as_uri(), "Version": "unknown"}]
        dataset_links["raw"] = Path(bids_dir).resolve().as_uri()
    dataset_links.update(TEMPLATE_LINKS)
    for name, path in (links or {}).items():
        dataset_links[name] = Path(path).resolve().as_uri()
    desc["DatasetLinks"] = dataset_links
    return desc


def init_derivatives(
    output_dir: str | os.PathLike,
    bids_dir: str | os.PathLike | None,
    links: dict[str, str | os.PathLike] | None = None,
) -> Path:
    """Make OUTPUT_DIR a derivative dataset (idempotent, safe under concurrency).

    Writes ``dataset_description.json`` (``links``: extra ``DatasetLinks``, e.g. the fMRIPrep
    folder of ``--derivatives``) and ``.bidsignore`` only when their content would change,
    always atomically, and creates ``logs/``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(exist_ok=True)
    desc_file = out / "dataset_description.json"
    desc = dataset_description(bids_dir, links)
    if not _same_json(desc_file, desc):
        atomic.write_json(desc_file, desc)
    ignore_file = out / ".bidsignore"
    text = "\n".join(BIDSIGNORE) + "\n"
    if not ignore_file.exists() or ignore_file.read_text() != text:
        atomic.write_text(ignore_file, text)
    return out


def _same_json(path: Path, data: dict[str, Any]) -> bool:
    try:
        return json.loads(path.read_text()) == json.loads(json.dumps(data, default=str))
    except (OSError, ValueError):
        return False
