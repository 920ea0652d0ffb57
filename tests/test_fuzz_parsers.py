"""Parser fuzzing: participants.tsv, sessions.tsv, sidecar JSON and --bids-filter-file either
parse or raise our clear one-line error, never another exception."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bids_brainage import bids
from bids_brainage.errors import BrainAgeError

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

cells = st.one_of(
    st.sampled_from(
        ["sub-01", "sub-02", "01", "n/a", "", "M", "F", "male", "2", "-1", "1e3", "nan", "ü", "../x"]
    ),
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True).map(str),
)
headers = st.lists(
    st.sampled_from(
        ["participant_id", "age", "Age", "sex", "gender", "site", "session_id", "age_at_scan", "x"]
    ),
    min_size=1,
    max_size=5,
)


def _tsv(header: list[str], rows: list[list[str]]) -> str:
    lines = ["\t".join(header)] + ["\t".join(row) for row in rows]
    return "\n".join(lines) + "\n"


@FUZZ
@given(
    header=headers,
    rows=st.lists(st.lists(cells, min_size=1, max_size=6), max_size=5),
    raw=st.binary(max_size=40),
)
def test_participants_tsv_fuzz(header, rows, raw):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for content in (_tsv(header, rows).encode("utf-8", "surrogatepass"), raw):
            (root / "participants.tsv").write_bytes(content)
            try:
                table = bids.read_participants(root)
            except BrainAgeError as err:
                assert "participants.tsv" in str(err) and "\n" not in str(err)
            else:
                assert set(table.columns) == {"age", "sex", "site"}
                assert table["age"].dropna().between(0, 130).all()


@FUZZ
@given(header=headers, rows=st.lists(st.lists(cells, min_size=1, max_size=6), max_size=5))
def test_sessions_tsv_fuzz(header, rows):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "sub-01").mkdir()
        (root / "sub-01" / "sub-01_sessions.tsv").write_text(
            _tsv(header, rows), encoding="utf-8", errors="replace"
        )
        try:
            table = bids.read_sessions(root, "01")
        except BrainAgeError as err:
            assert "sessions.tsv" in str(err) and "\n" not in str(err)
        else:
            assert table is not None and "age" in table.columns


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5)),
    lambda children: st.one_of(
        st.lists(children, max_size=3), st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=10,
)


@FUZZ
@given(
    data=st.one_of(
        json_values,
        st.dictionaries(st.sampled_from(["t1w", "bold", "T1w", "x"]), json_values, max_size=3),
    ),
    garbage=st.binary(max_size=30),
)
def test_bids_filter_file_fuzz(data, garbage):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "filter.json"
        for content in (json.dumps(data).encode(), garbage):
            path.write_bytes(content)
            try:
                filters = bids.parse_bids_filters(path)
            except BrainAgeError as err:
                assert "filter.json" in str(err) and "\n" not in str(err)
            else:
                assert set(filters) <= {"t1w", "bold"}
                assert all(isinstance(v, dict) for v in filters.values())


@FUZZ
@given(
    meta=st.dictionaries(
        st.sampled_from(["RepetitionTime", "TaskName", "SliceTiming", "x"]), json_values, max_size=4
    ),
    garbage=st.binary(max_size=30),
)
def test_bold_sidecar_fuzz(meta, garbage, real_data_session):
    layout, bold, sidecar = real_data_session
    for content in (json.dumps(meta).encode(), garbage):
        sidecar.write_bytes(content)
        try:
            result = bids.bold_metadata(layout.root, bold)
        except BrainAgeError as err:
            assert "bold" in str(err) and "\n" not in str(err)
        else:
            assert result["RepetitionTime"] > 0
