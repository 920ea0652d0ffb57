"""The computations of the pipeline as plain functions (NumPy, SciPy, nibabel, antspyx,
nilearn; no nipype), each module one step, each function testable alone.

:mod:`bids_brainage.interfaces` wraps them as nipype nodes; :mod:`bids_brainage.workflows`
connects the nodes.

- :mod:`~bids_brainage.compute.anat_ops`: T1w checks, N4, brain extraction, registration to
  the template, segmentation and its QC, Jacobian-modulated GM.
- :mod:`~bids_brainage.compute.anat_features`: global volumes and regional GM (and thickness).
- :mod:`~bids_brainage.compute.registration`: ``ants.registration`` with an explicit seed.
- :mod:`~bids_brainage.compute.bold`: BOLD input checks, the dummy-scan rule and their removal.
- :mod:`~bids_brainage.compute.hmc`: rigid head-motion estimation and resampling (arrays).
- :mod:`~bids_brainage.compute.motion`: head-motion correction of a BOLD file.
- :mod:`~bids_brainage.compute.coregistration`: rigid BOLD -> T1w registration.
- :mod:`~bids_brainage.compute.fmriprep`: reuse of fMRIPrep outputs.
- :mod:`~bids_brainage.compute.confounds`: the confounds table (24P, WM/CSF, FD, DVARS).
- :mod:`~bids_brainage.compute.connectivity`: atlas on the BOLD grid, the connectivity
  matrix and the feature table.
- :mod:`~bids_brainage.compute.denoise`: ROI time series, censoring and denoising.
- :mod:`~bids_brainage.compute.run_qc`: run QC and the exclusion rule.
- :mod:`~bids_brainage.compute.brainage`: the group level's model step (train with K-fold
  CV or apply a bundle; wraps :mod:`bids_brainage.model`).
"""
