"""Participant level runner: check each subject/session's inputs, build its workflow
(:func:`bids_brainage.workflows.base.init_single_subject_wf`) and run it.

Running subjects as separate workflows keeps failures isolated: a crash in one subject is
summarised in one line and the others go on (unless ``--stop-on-first-crash``). When
``--nprocs`` leaves room for more than one subject (see `parallel_subjects`), subjects run
side by side in worker processes, each with its share of the processors: one subject's
workflow is mostly a chain of steps, so it alone cannot keep many cores busy.
"""

from __future__ import annotations

import logging
import multiprocessing
import re
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bids_brainage import __version__, bids
from bids_brainage.cli.execution import SAFE_MP_CONTEXT, WorkflowFailed, run_workflow
from bids_brainage.cli.logs import StageLog
from bids_brainage.errors import BrainAgeError
from bids_brainage.gather import write_status
from bids_brainage.workflows.base import init_single_subject_wf

LOGGER = logging.getLogger("bids_brainage.participant")


@dataclass
class SubjectResult:
    """Outcome of one subject/session at the participant level."""

    subject: str
    session: str | None
    ok: bool = True
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return f"sub-{self.subject}" + (f"_ses-{self.session}" if self.session else "")


def _has_structural_features(config: Any, data: bids.SessionData) -> bool:
    folder = config.output_dir / f"sub-{data.subject}"
    if data.session:
        folder = folder / f"ses-{data.session}"
    return any((folder / "anat").glob("*_desc-structural_features.tsv"))


def run_subject(config: Any, data: bids.SessionData) -> SubjectResult:
    """Check one subject/session's inputs, build its workflow and run it."""
    result = SubjectResult(subject=data.subject, session=data.session)
    start = time.monotonic()
    if data.t1w is None:
        result.ok = False
        result.errors.append(f"{config.bids_dir / ('sub-' + data.subject)}: no T1w image found")
        return _finish(config, data, result, start)
    from bids_brainage.compute.anat_ops import check_t1w
    from bids_brainage.compute.bold import resolve_dummy_scans, validate_bold

    try:
        # Checked before any workflow is built: a bad T1w fails fast with one line.
        check_t1w(data.t1w)
    except BrainAgeError as err:
        result.ok = False
        result.errors.append(str(err))
        return _finish(config, data, result, start)
    bold_files = []
    for bold_file in data.bold:
        try:
            # The one check of a BOLD run, with the one dummy-scan rule (the workflow trusts it).
            meta = bids.bold_metadata(config.bids_dir, bold_file)
            validate_bold(bold_file, meta, resolve_dummy_scans(meta, config.dummy_scans))
            bold_files.append(bold_file)
        except BrainAgeError as err:
            # A bad BOLD run fails that run only: the subject goes on without it.
            LOGGER.warning("sub-%s: BOLD run skipped: %s", data.subject, err)
            result.ok = False
            result.errors.append(str(err))
    crash_dir = config.output_dir / f"sub-{data.subject}" / "log" / config.run_uuid
    try:
        workflow = init_single_subject_wf(config, data, bold_files)
        run_workflow(workflow, config, crash_dir, StageLog(result.label, bold_files, LOGGER))
    except WorkflowFailed as err:
        result.ok = False
        result.errors.append(err.reason)
    except BrainAgeError as err:
        result.ok = False
        result.errors.append(str(err))
    if config.model is not None and _has_structural_features(config, data):
        try:
            from bids_brainage.cli.group import predict_subject

            predict_subject(config, data.subject, data.session)
        except BrainAgeError as err:
            result.ok = False
            result.errors.append(str(err))
    if crash_dir.exists() and not any(crash_dir.iterdir()):
        crash_dir.rmdir()
    return _finish(config, data, result, start)


def _finish(config: Any, data: bids.SessionData, result: SubjectResult, start: float) -> SubjectResult:
    """Record the run time and write the status file, last: the group level reads only these."""
    result.seconds = time.monotonic() - start
    write_status(
        config.output_dir,
        data.subject,
        data.session,
        {
            "subject": data.subject,
            "session": data.session,
            "ok": result.ok,
            "outcomes": modality_outcomes(data, result),
            "errors": result.errors,
            "t1w": data.t1w,
            "bold": data.bold,
            "seconds": round(result.seconds, 1),
            "version": __version__,
            "run_uuid": config.run_uuid,
        },
    )
    return result


#: Workflow names in nipype's one-line crash summaries (``sub_X_wf.func_run2_wf.node: ...``).
_BRANCH = re.compile(r"(?:^|[.;\s])(anat_wf|func_run(\d+)_wf)\.")


def modality_outcomes(data: bids.SessionData, result: SubjectResult) -> dict[str, Any]:
    """What this run produced: ``{"anat": "ok"|"failed", "bold": {BOLD name: "ok"|"failed"}}``.

    The group level uses only outputs whose latest run succeeded: features left by an
    earlier run must not stand in for a rerun that failed. Each error is attributed from
    its message: a BOLD check error names its run; a crash summary names its workflow
    (``anat_wf``, ``func_run<N>_wf``, N counting the runs that passed the checks). An error
    that cannot be attributed fails everything (the subject is skipped and named, never
    used with stale features); a failed anatomy fails every BOLD run (they depend on it).
    """
    bold_failed = {b for b in data.bold if any(e.startswith(f"{b}:") for e in result.errors)}
    processed = [b for b in data.bold if b not in bold_failed]
    anat_failed = data.t1w is None
    for error in result.errors:
        if any(error.startswith(f"{b}:") for b in data.bold):
            continue
        branches = _BRANCH.findall(error)
        if not branches:
            anat_failed = True  # a T1w error, or one we cannot place: distrust all outputs
        for name, run in branches:
            if name == "anat_wf" or not run or int(run) > len(processed):
                anat_failed = True
            else:
                bold_failed.add(processed[int(run) - 1])
    bold = {Path(b).name: "failed" if anat_failed or b in bold_failed else "ok" for b in data.bold}
    return {"anat": "failed" if anat_failed else "ok", "bold": bold}


#: Processors one subject's workflow can use well: its anatomical and functional branches
#: overlap only partly, so more go idle (measured: 6 processors gave 55 s per subject,
#: the same as 2).
PROCS_PER_SUBJECT = 2


def parallel_subjects(config: Any, n_jobs: int) -> int:
    """How many subjects/sessions run at once: ``--nprocs`` split into shares of
    ``max(PROCS_PER_SUBJECT, --omp-nthreads)`` processors; 1 with a ``--use-plugin`` file
    (the cluster scheduler parallelises then)."""
    if config.use_plugin:
        return 1
    share = max(PROCS_PER_SUBJECT, config.omp_nthreads)
    return max(1, min(n_jobs, config.nprocs // share))


def run_participants(config: Any) -> int:
    """The participant level for every selected subject; returns the exit code."""
    if config.reports_only:
        from bids_brainage.reports.rebuild import rebuild_reports

        return rebuild_reports(config)
    if not config.skip_bids_validation:
        report = config.output_dir / "logs" / f"bids_validator_{config.run_uuid}.txt"
        bids.validate_dataset(config.bids_dir, report)
    layout = bids.load_layout(config.bids_dir)
    subjects = bids.select_subjects(layout, config.participant_label)
    LOGGER.info("participant level: %d subject(s): %s", len(subjects), " ".join(subjects))
    jobs: list[bids.SessionData] = []
    for subject in subjects:
        jobs += bids.collect_data(layout, subject, config.task_id, config.session_label, config.bids_filters)
    if config.anat_only:  # no BOLD run is checked, processed or recorded as processed
        jobs = [replace(job, bold=[]) for job in jobs]
    with _exclusive(config, jobs):
        return _run_jobs(config, jobs)


@contextmanager
def _exclusive(config: Any, jobs: list[bids.SessionData]) -> Iterator[None]:
    """Lock each subject's share of the work dir; on SIGTERM/SIGINT stop every worker and
    remove this run's unfinished files (see :mod:`bids_brainage.utils.interrupt`)."""
    from bids_brainage.gather import STATUS_DIR
    from bids_brainage.utils.interrupt import remove_temporaries, stop_all_on_signal
    from bids_brainage.utils.locks import work_dir_lock

    labels = sorted({f"sub-{d.subject}" + (f"_ses-{d.session}" if d.session else "") for d in jobs})
    subjects = sorted({f"sub-{d.subject}" for d in jobs})
    out = config.output_dir
    prefixes = tuple(f"{s}{sep}" for s in subjects for sep in (".", "_"))

    def cleanup() -> int:
        return remove_temporaries(
            [out / s for s in subjects], [(out, prefixes), (out / STATUS_DIR, prefixes)]
        )

    with ExitStack() as stack:
        for label in labels:
            stack.enter_context(work_dir_lock(config.work_dir, label, f"participant run of {label}"))
        stack.enter_context(stop_all_on_signal(cleanup))
        yield


def _run_jobs(config: Any, jobs: list[bids.SessionData]) -> int:
    """Run the subjects/sessions one after another or side by side; returns the exit code."""
    n_parallel = parallel_subjects(config, len(jobs))
    if n_parallel == 1:
        results = []
        for data in jobs:
            _log_start(data)
            results.append(run_subject(config, data))
            if not _report(config, results[-1]):
                LOGGER.error("stopping at the first failure (--stop-on-first-crash)")
                break
        return _summary(results)
    return _run_in_parallel(config, jobs, n_parallel)


def _run_in_parallel(config: Any, jobs: list[bids.SessionData], n_parallel: int) -> int:
    """Run subjects in ``n_parallel`` worker processes, each with its share of ``--nprocs``."""
    share = replace(
        config,
        nprocs=config.nprocs // n_parallel,
        mem_mb=config.mem_mb // n_parallel if config.mem_mb else None,
    )
    LOGGER.info("running %d subjects at a time, %d processor(s) each", n_parallel, share.nprocs)
    results: list[SubjectResult] = []
    # Workers start from a fresh server process (not a fork of this one, see execution.py);
    # they run nipype's own process pool in turn, so they must not be daemonic (they are not).
    context = multiprocessing.get_context(SAFE_MP_CONTEXT)
    log_files = [
        Path(h.baseFilename)
        for h in logging.getLogger("bids_brainage").handlers
        if isinstance(h, logging.FileHandler)
    ]
    init_args = (config.verbosity, log_files[0] if log_files else None)
    with ProcessPoolExecutor(
        n_parallel, mp_context=context, initializer=_init_worker, initargs=init_args
    ) as pool:
        futures: dict[Future, bids.SessionData] = {}
        for data in jobs:
            _log_start(data)
            futures[pool.submit(run_subject, share, data)] = data
        for future in as_completed(futures):
            try:
                results.append(future.result())
            except Exception as err:  # the worker died (e.g. killed for memory): that subject fails
                data = futures[future]
                reason = f"worker process failed ({type(err).__name__}: {err})"
                results.append(SubjectResult(data.subject, data.session, ok=False, errors=[reason]))
            if not _report(config, results[-1]):
                LOGGER.error("stopping at the first failure (--stop-on-first-crash)")
                for pending in futures:
                    pending.cancel()
                break
    return _summary(results)


def _init_worker(verbosity: int, log_file: Path | None) -> None:
    """Logging in a worker process as in the main one (console and the run's log file)."""
    from bids_brainage.cli.logs import setup_logging

    setup_logging(verbosity, log_file)


def _log_start(data: bids.SessionData) -> None:
    label = f"sub-{data.subject}" + (f"_ses-{data.session}" if data.session else "")
    LOGGER.info("%s: T1w %s, %d BOLD run(s)", label, _name(data.t1w), len(data.bold))


def _report(config: Any, result: SubjectResult) -> bool:
    """Write the subject's report and log its outcome; False means stop (first crash)."""
    _write_reports(config, result)
    if result.ok:
        LOGGER.info("%s: finished in %.0f s", result.label, result.seconds)
        return True
    for message in result.errors:
        LOGGER.error("%s: %s", result.label, message)
    return not config.stop_on_first_crash


def _name(path: str | None) -> str:
    return Path(path).name if path else "none"


def _write_reports(config: Any, result: SubjectResult) -> None:
    """Per-subject HTML report (a failure here never fails the subject)."""
    try:
        from bids_brainage.reports.subject import generate_subject_report
    except ImportError:
        return
    try:
        generate_subject_report(config, result.subject, result.session, errors=result.errors)
    except Exception as err:  # a broken report must not hide the results
        LOGGER.warning("%s: report not written (%s)", result.label, err)


def _summary(results: list[SubjectResult]) -> int:
    failed = [r for r in results if not r.ok]
    LOGGER.info("participant level: %d of %d succeeded", len(results) - len(failed), len(results))
    for result in failed:
        LOGGER.error("FAILED %s: %s", result.label, " | ".join(result.errors))
    return 1 if failed else 0
