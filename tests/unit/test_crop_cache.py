"""The crop cache (``components.store.crop_cache``): a store row read back from its cache row
gives the batch the store row gives (``RowDecoder``), and the key follows the store's files."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from components.batches import RowDecoder
from components.models.base import InputSpec
from components.store.crop_cache import (cache_file, cache_key, cache_root, cached_columns, crop_cache_size,
                                         crop_cache_table)
from components.store.rows import encode_jpeg


def _store_rows(n: int = 6, steps: int = 3, n_aus: int = 4) -> dict:
    rng = np.random.default_rng(0)
    crops = [(rng.random((112, 112, 3)) * 255).astype(np.uint8) for _ in range(n)]
    return {
        "sample_id": [f"d/s{i % 2}/v/{i}" for i in range(n)], "dataset": ["d"] * n,
        "subject": [f"s{i % 2}" for i in range(n)], "video": ["v"] * n, "frame_order": list(range(n)),
        "face_id": [int(i >= 4) for i in range(n)],  # rows 4 and 5: a second face of s0's and s1's video
        "image": [encode_jpeg(c, 95) for c in crops],
        "landmarks": [rng.uniform(20, 90, 136).astype(np.float32).tolist() for _ in range(n)],
        "landmark_diff": [rng.normal(0, 2, steps * 136).astype(np.float32).tolist() for _ in range(n)],
        "diff_valid": [[True, i % 2 == 0, False] for i in range(n)],
        "labels": [[1, -1, 0, 1] if i % 3 else [] for i in range(n)],   # [] = every AU unknown
        "intensities": [[3, -1, 0, 2] if i % 2 else [] for i in range(n)],
    }


@pytest.mark.parametrize("size", [64, 112, 224])
def test_cache_rows_decode_to_the_store_rows_batch(tmp_path, size: int) -> None:
    rows = _store_rows()
    side = crop_cache_size(size, 112)                  # the store's crops are 112 px
    pq.write_table(crop_cache_table(rows, side, 3, 4), tmp_path / "c.parquet")
    cached = cached_columns(pq.read_table(tmp_path / "c.parquet"), side, 3, 4)
    spec = InputSpec(image_size=size, diff_steps=(1, 4))
    decoder = RowDecoder(spec, (1, 2, 4), 4)
    want, got = decoder({k: np.asarray(v, dtype=object) for k, v in rows.items()}), decoder(cached)
    assert sorted(want) == sorted(got)
    for key, value in want.items():
        np.testing.assert_array_equal(np.asarray(got[key]), value, err_msg=key)
    assert got["crop"].shape == (6, side, side, 3) and got["landmark_diff"].shape == (6, 2, 68, 2)
    # One track per face: the second face of a video is grouped apart from the first.
    assert len(set(got["video_index"].tolist())) == 4 and got["video_index"][4] != got["video_index"][0]
    np.testing.assert_array_equal(got["labels"][0], [-1, -1, -1, -1])


def test_cache_of_another_size_is_refused(tmp_path) -> None:
    pq.write_table(crop_cache_table(_store_rows(), 64, 3, 4), tmp_path / "c.parquet")
    with pytest.raises(ValueError, match="crop cache column crop"):
        cached_columns(pq.read_table(tmp_path / "c.parquet"), 112, 3, 4)


def test_bad_list_length_names_the_row() -> None:
    rows = _store_rows()
    rows["labels"][2] = [1, 0]
    with pytest.raises(ValueError, match="d/s0/v/2: labels has 2 values"):
        crop_cache_table(rows, 112, 3, 4)


def test_key_follows_the_store_and_the_size(tmp_path) -> None:
    store = tmp_path / "store"
    (store / "frames" / "d").mkdir(parents=True)
    (store / "store.json").write_text(json.dumps({"aus": [1, 2], "image_size": 112}))
    frames = store / "frames" / "d" / "a.parquet"
    pq.write_table(pa.table({"x": [1, 2]}), frames)
    files = [str(frames)]
    key = cache_key(str(store), 112, files)
    assert key == cache_key(str(store), 112, files)
    assert key != cache_key(str(store), 224, files)
    pq.write_table(pa.table({"x": [1, 2, 3]}), frames)               # the store's rows changed
    assert cache_key(str(store), 112, files) != key
    root = cache_root(str(store), 112, key)
    assert cache_file(str(store), root, str(frames)) == f"{root}/d/a.parquet"


def test_larger_model_reads_the_cache_at_the_stored_size_as_it_reads_the_store() -> None:
    """A 224 px model on a 112 px store: the cache keeps 112 px crops, the worker upsizes them
    (``upsize_batch``), and the model's input is the one evaluation's ``BatchBuilder`` gives."""
    import torch

    from components.batches import BatchBuilder, model_batch

    rows = _store_rows()
    assert crop_cache_size(224, 112) == 112 and crop_cache_size(64, 112) == 64
    table = pa.Table.from_batches(crop_cache_table(rows, 112, 3, 4).to_batches())
    spec = InputSpec(image_size=224, diff_steps=(1,))
    cached = RowDecoder(spec, (1, 2, 4), 4)(cached_columns(table, 112, 3, 4))
    got = model_batch({k: torch.from_numpy(np.array(v)) for k, v in cached.items() if v.dtype.kind in "fiub"},
                      spec, None)
    want = BatchBuilder(spec, (1, 2, 4), 4)({k: np.asarray(v, dtype=object) for k, v in rows.items()})
    assert got["image"].shape == (6, 3, 224, 224)
    np.testing.assert_array_equal(got["image"].numpy(), want["image"])
    np.testing.assert_allclose(got["landmarks"].numpy(), want["landmarks"], atol=1e-4)
