"""The driver's whole-store scans (``components.store.splits``): per-subject label counts and
identity groups, summed file by file over a store whose subjects span several frames files."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from components.store.splits import subject_groups, subject_label_counts


def _write(store, subject: str, video: str, group: str, labels: list[list[int]]) -> None:
    folder = store / "frames" / "manifest" / subject
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"subject": [subject] * len(labels), "group": [group] * len(labels),
                             "labels": pa.array(labels, pa.list_(pa.int8()))}), folder / f"{video}.parquet")


def test_counts_and_groups_add_up_over_every_file_of_a_subject(tmp_path) -> None:
    # S1's rows are in two files; AU columns: (positive, known) = (== 1, >= 0) per AU.
    _write(tmp_path, "S1", "V00", "G1", [[1, 0], [1, -1], [0, 1]])
    _write(tmp_path, "S1", "V01", "G1", [[1, 1], [-1, -1]])
    _write(tmp_path, "S2", "V00", "G2", [[0, 0], [0, 1]])
    counts = subject_label_counts(str(tmp_path))
    assert list(counts) == ["S1", "S2"]
    np.testing.assert_array_equal(counts["S1"], [[3, 2], [4, 3]])
    np.testing.assert_array_equal(counts["S2"], [[0, 1], [2, 2]])
    assert subject_groups(str(tmp_path)) == {"S1": "G1", "S2": "G2"}


def test_a_store_without_labels_counts_no_au(tmp_path) -> None:
    _write(tmp_path, "S1", "V00", "G1", [[], []])
    _write(tmp_path, "S1", "V01", "G1", [[]])
    assert {s: c.shape for s, c in subject_label_counts(str(tmp_path)).items()} == {"S1": (2, 0)}
