"""User data files: each format round-trips, and each kind of bad file raises a clear error.

Every test writes its own file in ``tmp_path``.
"""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from probpath.data import load_dataset


def _write_idx(path, arr: np.ndarray, *, gz: bool = False, truncate: int = 0):
    code = {np.uint8: 0x08, np.float32: 0x0D}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + b"".join(struct.pack(">I", s) for s in arr.shape)
    raw = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    raw = raw[: len(raw) - truncate]
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def _png(path, arr: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


# ----------------------------------------------------------------------------- formats
def test_npy_vectors(tmp_path):
    x = np.random.default_rng(0).normal(size=(20, 3))
    np.save(tmp_path / "v.npy", x)
    d = load_dataset(tmp_path / "v.npy")
    assert d.x.dtype == torch.float32 and d.event_shape == (3,) and d.name == "v"
    assert torch.allclose(d.x, torch.from_numpy(x).float())
    assert not d.discrete and d.value_range is None and d.y is None


def test_npy_uint8_images_are_discrete(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(6, 5, 4), dtype=np.uint8)
    np.save(tmp_path / "img.npy", x)
    d = load_dataset(str(tmp_path / "img.npy"))
    assert d.event_shape == (1, 5, 4)
    assert d.discrete and d.n_levels == 256 and d.value_range == (0.0, 255.0)
    assert torch.equal(d.x[:, 0], torch.from_numpy(x).float())


def test_npy_channels_last_is_transposed(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, size=(4, 6, 5, 3), dtype=np.uint8)
    np.save(tmp_path / "rgb.npy", x)
    d = load_dataset(tmp_path / "rgb.npy")
    assert d.event_shape == (3, 6, 5)
    assert torch.equal(d.x, torch.from_numpy(x).permute(0, 3, 1, 2).float())


def test_npy_with_labels_file(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((5, 2)))
    np.save(tmp_path / "y.npy", np.array([0, 2, 1, 2, 0]))
    d = load_dataset(tmp_path / "x.npy", labels=tmp_path / "y.npy")
    assert d.y.tolist() == [0, 2, 1, 2, 0] and d.num_classes == 3


def test_npz_keys_and_only_array(tmp_path):
    x = np.arange(12.0).reshape(6, 2)
    np.savez(tmp_path / "a.npz", x=x, y=np.array([0, 1, 0, 1, 0, 1]))
    d = load_dataset(tmp_path / "a.npz")
    assert torch.equal(d.x, torch.from_numpy(x).float()) and d.num_classes == 2
    np.savez(tmp_path / "b.npz", whatever=x)
    assert load_dataset(tmp_path / "b.npz").x.shape == (6, 2)


def test_csv_header_and_text_labels(tmp_path):
    (tmp_path / "t.csv").write_text("a,b,label\n1.5,2,cat\n3,4e-1,dog\n-1,0,cat\n")
    d = load_dataset(tmp_path / "t.csv")
    assert d.x.tolist() == [[1.5, 2.0], [3.0, pytest.approx(0.4)], [-1.0, 0.0]]
    assert d.y.tolist() == [0, 1, 0] and d.num_classes == 2


def test_csv_without_header_semicolon(tmp_path):
    (tmp_path / "t.csv").write_text("1;2;3\n4;5;6\n")
    d = load_dataset(tmp_path / "t.csv")
    assert d.x.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]] and d.y is None


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    arr=arrays(
        np.float32,
        st.tuples(st.integers(1, 8), st.integers(1, 4)),
        elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    )
)
def test_csv_round_trip_property(tmp_path, arr):
    path = tmp_path / "prop.csv"
    np.savetxt(path, arr, delimiter=",", fmt="%.9g")  # 9 significant digits: exact for float32
    d = load_dataset(path)
    assert torch.equal(d.x, torch.from_numpy(arr))


@pytest.mark.parametrize("gz", [False, True])
def test_idx_images_and_labels(tmp_path, gz):
    suffix = ".gz" if gz else ""
    imgs = np.random.default_rng(0).integers(0, 256, size=(7, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5, 9, 2], dtype=np.uint8)
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", imgs, gz=gz)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels, gz=gz)
    d = load_dataset(
        tmp_path / f"train-images-idx3-ubyte{suffix}",
        labels=tmp_path / f"train-labels-idx1-ubyte{suffix}",
    )
    assert d.event_shape == (1, 4, 3) and d.discrete and d.n_levels == 256
    assert torch.equal(d.x[:, 0], torch.from_numpy(imgs).float())
    assert d.y.tolist() == labels.tolist() and d.num_classes == 10


def test_idx_float_by_magic_number(tmp_path):
    x = np.random.default_rng(0).normal(size=(5, 2, 2)).astype(np.float32)
    _write_idx(tmp_path / "features.bin", x)
    d = load_dataset(tmp_path / "features.bin")
    assert torch.equal(d.x[:, 0], torch.from_numpy(x)) and not d.discrete


def test_image_folder_with_classes(tmp_path):
    rng = np.random.default_rng(0)
    a = [rng.integers(0, 256, (5, 4), dtype=np.uint8) for _ in range(3)]
    _png(tmp_path / "cats" / "0.png", a[0])
    _png(tmp_path / "cats" / "1.png", a[1])
    _png(tmp_path / "dogs" / "0.png", a[2])
    (tmp_path / "dogs" / "notes.txt").write_text("not an image")
    d = load_dataset(tmp_path)
    assert d.event_shape == (1, 5, 4) and d.discrete and d.value_range == (0.0, 255.0)
    assert d.y.tolist() == [0, 0, 1] and d.num_classes == 2
    assert torch.equal(d.x[:, 0], torch.from_numpy(np.stack(a)).float())


def test_image_folder_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (4, 4, 3), dtype=np.uint8)
    _png(tmp_path / "a.png", rgb)
    _png(tmp_path / "b.png", rgb[..., 0])  # a grey image joins as RGB
    d = load_dataset(tmp_path)
    assert d.event_shape == (3, 4, 4) and d.y is None
    assert torch.equal(d.x[0], torch.from_numpy(rgb).permute(2, 0, 1).float())
    assert torch.equal(d.x[1, 1], torch.from_numpy(rgb[..., 0]).float())


def test_subset_n_is_seeded(tmp_path):
    np.save(tmp_path / "v.npy", np.arange(40.0).reshape(20, 2))
    a = load_dataset(tmp_path / "v.npy", n=5, seed=1)
    assert len(a) == 5 and torch.equal(a.x, load_dataset(tmp_path / "v.npy", n=5, seed=1).x)


# ----------------------------------------------------------------------------- bad data
def test_error_nan(tmp_path):
    np.save(tmp_path / "nan.npy", np.array([[1.0, np.nan], [0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"nan\.npy.*NaN or infinite.*drop or impute"):
        load_dataset(tmp_path / "nan.npy")


def test_error_inf_in_csv(tmp_path):
    (tmp_path / "inf.csv").write_text("1,2\n3,inf\n")
    with pytest.raises(ValueError, match=r"inf\.csv.*NaN or infinite"):
        load_dataset(tmp_path / "inf.csv")


def test_error_empty_npy(tmp_path):
    np.save(tmp_path / "empty.npy", np.zeros((0, 3)))
    with pytest.raises(ValueError, match=r"empty\.npy.*empty"):
        load_dataset(tmp_path / "empty.npy")


def test_error_empty_csv(tmp_path):
    (tmp_path / "empty.csv").write_text("\n\n")
    with pytest.raises(ValueError, match=r"empty\.csv is empty"):
        load_dataset(tmp_path / "empty.csv")


def test_error_header_only_csv(tmp_path):
    (tmp_path / "h.csv").write_text("a,b\n")
    with pytest.raises(ValueError, match="header but no data rows"):
        load_dataset(tmp_path / "h.csv")


def test_error_ragged_csv(tmp_path):
    (tmp_path / "r.csv").write_text("1,2,3\n4,5\n")
    with pytest.raises(ValueError, match=r"row 2 has 2 fields but row 1 has 3 \(ragged"):
        load_dataset(tmp_path / "r.csv")


def test_error_non_numeric_column(tmp_path):
    (tmp_path / "s.csv").write_text("a,colour\n1,red\n2,blue\n")
    with pytest.raises(ValueError, match=r"column 'colour' is not numeric.*drop the column"):
        load_dataset(tmp_path / "s.csv")


def test_error_missing_value_csv(tmp_path):
    (tmp_path / "m.csv").write_text("a,b\n1,2\n3,\n")
    with pytest.raises(ValueError, match=r"row 3, column 'b' is empty"):
        load_dataset(tmp_path / "m.csv")


def test_error_one_dimensional_npy(tmp_path):
    np.save(tmp_path / "flat.npy", np.arange(5.0))
    with pytest.raises(ValueError, match=r"at least 2 dimensions.*reshape to \(N, 1\)"):
        load_dataset(tmp_path / "flat.npy")


def test_error_labels_file_given_as_idx_images(tmp_path):
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", np.arange(5, dtype=np.uint8))
    with pytest.raises(ValueError, match="looks like a labels file: pass it as labels="):
        load_dataset(tmp_path / "t10k-labels-idx1-ubyte")


def test_error_label_count_mismatch(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((5, 2)))
    with pytest.raises(ValueError, match="3 labels for 5 samples"):
        load_dataset(tmp_path / "x.npy", labels=np.array([0, 1, 2]))


def test_error_negative_labels(tmp_path):
    np.save(tmp_path / "x.npy", np.ones((2, 2)))
    with pytest.raises(ValueError, match="non-negative class indices"):
        load_dataset(tmp_path / "x.npy", labels=[0, -1])


def test_error_fractional_labels(tmp_path):
    np.savez(tmp_path / "f.npz", x=np.ones((2, 2)), y=np.array([0.5, 1.0]))
    with pytest.raises(ValueError, match="whole numbers"):
        load_dataset(tmp_path / "f.npz")


def test_error_corrupt_npy(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"\x93NUMPY garbage")
    with pytest.raises(ValueError, match=r"bad\.npy is not a readable NumPy file"):
        load_dataset(tmp_path / "bad.npy")


def test_error_pickled_object_array(tmp_path):
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="never unpickles"):
        load_dataset(tmp_path / "obj.npy")


def test_error_ambiguous_npz(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.ones((2, 2)), b=np.ones((2, 2)))
    with pytest.raises(ValueError, match=r"holds arrays \['a', 'b'\].*name the data array 'x'"):
        load_dataset(tmp_path / "two.npz")


def test_error_truncated_idx(tmp_path):
    path = _write_idx(tmp_path / "imgs-idx3-ubyte", np.zeros((4, 3, 3), np.uint8), truncate=5)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_dataset(path)


def test_error_corrupt_gzip(tmp_path):
    (tmp_path / "imgs-idx3-ubyte.gz").write_bytes(b"\x1f\x8b" + b"\x00" * 20)
    with pytest.raises(ValueError, match=r"could not be read.*truncated"):
        load_dataset(tmp_path / "imgs-idx3-ubyte.gz")


def test_error_bad_idx_magic(tmp_path):
    (tmp_path / "x.idx").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(ValueError, match="bad magic number"):
        load_dataset(tmp_path / "x.idx")


def test_error_corrupt_image(tmp_path):
    _png(tmp_path / "ok.png", np.zeros((3, 3), np.uint8))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"broken\.png is not a readable image"):
        load_dataset(tmp_path)


def test_error_images_of_different_sizes(tmp_path):
    _png(tmp_path / "a.png", np.zeros((3, 3), np.uint8))
    _png(tmp_path / "b.png", np.zeros((4, 3), np.uint8))
    with pytest.raises(ValueError, match="differ in size.*resize them"):
        load_dataset(tmp_path)


def test_error_empty_folder(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="contains no images"):
        load_dataset(tmp_path)


def test_error_unsupported_suffix(tmp_path):
    (tmp_path / "data.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"unsupported file type; use \.npy"):
        load_dataset(tmp_path / "data.json")


def test_error_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match=r"Did you mean 'moons'\?.*checkerboard.*digits"):
        load_dataset("mooons")
