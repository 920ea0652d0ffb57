"""The one sink of the pipeline: every derivative and reportlet is written into OUTPUT_DIR by
:class:`DerivativesDataSink` (BIDS names, sidecars, atomic renames)."""

from __future__ import annotations

import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from bids_brainage import derivatives
from bids_brainage.utils import atomic


class _DerivativesDataSinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="file to store")
    base_directory = traits.Str(mandatory=True, desc="OUTPUT_DIR")
    datatype = traits.Str(
        "anat",
        usedefault=True,
        desc="anat, func, figures (reportlets, sub-X/figures), or '' for the subject folder",
    )
    suffix = traits.Str(mandatory=True, desc="BIDS suffix, e.g. T1w, probseg, xfm")
    extension = traits.Str(desc="extension with the dot; default: taken from in_file")
    entities = traits.Dict(mandatory=True, desc="BIDS entities, at least 'sub'")
    metadata = traits.Dict(desc="JSON sidecar content (written next to the file)")
    source_files = traits.List(traits.Str, desc="BIDS URIs stored as 'Sources' in the sidecar")


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(desc="the stored derivative")
    out_meta = File(desc="its JSON sidecar, when metadata or sources were given")


class DerivativesDataSink(SimpleInterface):
    """Copy ``in_file`` to its BIDS derivative name (atomically) and write its sidecar."""

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec
    # Never cached (as niworkflows' sink): a rerun with the same work dir restores deleted or
    # moved outputs instead of trusting the cache.
    _always_run = True

    def _run_interface(self, runtime):
        src = Path(self.inputs.in_file)
        ext = self.inputs.extension if isdefined(self.inputs.extension) else _extension(src)
        out = derivatives.derivative_path(
            self.inputs.base_directory,
            self.inputs.datatype or None,
            self.inputs.suffix,
            ext,
            **self.inputs.entities,
        )
        atomic.write_with(out, lambda tmp: shutil.copyfile(src, tmp))
        self._results["out_file"] = str(out)
        meta = dict(self.inputs.metadata) if isdefined(self.inputs.metadata) else {}
        if isdefined(self.inputs.source_files) and self.inputs.source_files:
            meta["Sources"] = list(self.inputs.source_files)
        if meta:
            self._results["out_meta"] = str(derivatives.write_sidecar(out, meta))
        return runtime


def _extension(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".tsv.gz"):
        if name.endswith(ext):
            return ext
    return path.suffix
