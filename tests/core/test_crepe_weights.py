"""Tests for ddsp_core/crepe_weights.py: restricted .pth reading, conversion, verified cache."""

import struct
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ddsp_core import crepe_weights as cw

# --- a minimal writer of torch zip-format state dicts (pickle protocol 2 opcodes), so no torch is needed ---------


def _global(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def _str(text: str) -> bytes:
    data = text.encode()
    return b"X" + struct.pack("<I", len(data)) + data


def _int(value: int) -> bytes:
    return b"J" + struct.pack("<i", value)


def _tuple(*items: bytes) -> bytes:
    return b"(" + b"".join(items) + b"t"


_EMPTY_ORDERED_DICT = _global("collections", "OrderedDict") + b")R"


def _tensor(key: str, numel: int, offset: int, size: tuple, stride: tuple, storage: str = "FloatStorage") -> bytes:
    storage_pid = _tuple(_str("storage"), _global("torch", storage), _str(key), _str("cpu"), _int(numel)) + b"Q"
    args = _tuple(
        storage_pid, _int(offset), _tuple(*map(_int, size)), _tuple(*map(_int, stride)), b"\x89", _EMPTY_ORDERED_DICT
    )
    return _global("torch._utils", "_rebuild_tensor_v2") + args + b"R"


def _state_dict_pickle(entries: dict[str, bytes]) -> bytes:
    items = b"".join(_str(name) + value for name, value in entries.items())
    return b"\x80\x02" + _EMPTY_ORDERED_DICT + b"(" + items + b"u."


def _write_pth(path: Path, tensors: dict[str, np.ndarray], extra: dict[str, bytes] | None = None) -> Path:
    """Write ``tensors`` (contiguous arrays) as torch.save would, one storage per tensor; ``extra`` adds raw entries."""
    entries, storages = {}, {}
    for index, (name, value) in enumerate(tensors.items()):
        key = str(1000 + index)
        value = np.asarray(value, order="C")
        storage = "LongStorage" if value.dtype == np.int64 else "FloatStorage"
        stride = tuple(s // value.itemsize for s in value.strides)
        entries[name] = _tensor(key, value.size, 0, value.shape, stride, storage)
        storages[key] = value.astype(value.dtype.newbyteorder("<")).tobytes()
    entries.update(extra or {})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _state_dict_pickle(entries))
        for key, data in storages.items():
            archive.writestr(f"archive/data/{key}", data)
        archive.writestr("archive/version", "3\n")
    return path


def _crepe_state_dict(capacity: int = 1, seed: int = 0) -> dict[str, np.ndarray]:
    """A random state dict with torchcrepe's names and shapes for a CREPE of the given capacity."""
    rng = np.random.default_rng(seed)
    channels = [1] + [capacity * c for c in (32, 4, 4, 4, 8, 16)]
    state = {}
    for i in range(1, 7):
        width = 512 if i == 1 else 64
        state[f"conv{i}.weight"] = rng.normal(size=(channels[i], channels[i - 1], width, 1)).astype(np.float32)
        state[f"conv{i}.bias"] = rng.normal(size=channels[i]).astype(np.float32)
        for name in ("weight", "bias", "running_mean"):
            state[f"conv{i}_BN.{name}"] = rng.normal(size=channels[i]).astype(np.float32)
        state[f"conv{i}_BN.running_var"] = rng.uniform(0.5, 2.0, size=channels[i]).astype(np.float32)
        state[f"conv{i}_BN.num_batches_tracked"] = np.array(0, dtype=np.int64)
    state["classifier.weight"] = rng.normal(size=(360, 4 * channels[-1])).astype(np.float32)
    state["classifier.bias"] = rng.normal(size=360).astype(np.float32)
    return state


# --- reading .pth files ------------------------------------------------------------------------------------------


def test_pth_reader_rebuilds_tensors_exactly_including_offsets_and_strides(tmp_path):
    values = np.arange(12, dtype=np.float32)
    path = tmp_path / "strided.pth"
    extra = {
        # a transposed (3, 2) view of elements 2..7 of the shared storage "1000"
        "view": _tensor("1000", 12, 2, (3, 2), (1, 3)),
    }
    _write_pth(path, {"base": values, "count": np.array(7, dtype=np.int64)}, extra)
    state = cw.read_torch_state_dict(path)
    np.testing.assert_array_equal(state["base"], values)
    np.testing.assert_array_equal(state["view"], values[2:8].reshape(2, 3).T)
    assert state["count"].dtype == np.int64 and int(state["count"]) == 7


def test_foreign_global_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    payload = _global("os", "system") + _tuple(_str(f"touch {marker}")) + b"R"
    path = _write_pth(tmp_path / "evil.pth", {"conv1.bias": np.zeros(3, np.float32)}, {"evil": payload})
    with pytest.raises(cw.RefusedGlobalError, match=r"refused global os\.system") as info:
        cw.read_torch_state_dict(path)
    assert "Nothing from this file was executed" in str(info.value)
    assert not marker.exists()


@pytest.mark.parametrize("global_name", [("builtins", "eval"), ("torch", "load"), ("numpy", "load")])
def test_every_global_outside_the_allow_list_is_refused(tmp_path, global_name):
    payload = _global(*global_name) + _tuple(_str("1")) + b"R"
    path = _write_pth(tmp_path / "other.pth", {}, {"x": payload})
    with pytest.raises(cw.RefusedGlobalError, match=".".join(global_name)):
        cw.read_torch_state_dict(path)


def test_truncated_corrupt_and_non_zip_files_raise_weights_file_error(tmp_path):
    good = _write_pth(tmp_path / "good.pth", {"w": np.ones((4, 4), np.float32)})
    data = good.read_bytes()
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a zip" * 100)
    short_storage = tmp_path / "short.pth"
    with zipfile.ZipFile(short_storage, "w") as archive:
        archive.writestr("archive/data.pkl", _state_dict_pickle({"w": _tensor("7", 16, 0, (4, 4), (4, 1))}))
        archive.writestr("archive/data/7", b"\x00" * 12)  # 3 floats where 16 are declared
    out_of_bounds = tmp_path / "oob.pth"
    with zipfile.ZipFile(out_of_bounds, "w") as archive:
        archive.writestr("archive/data.pkl", _state_dict_pickle({"w": _tensor("7", 4, 2, (4,), (1,))}))
        archive.writestr("archive/data/7", b"\x00" * 16)
    for path, message in [
        (truncated, "not a readable torch state dict"),
        (garbage, "not a readable torch state dict"),
        (short_storage, "corrupt or truncated"),
        (out_of_bounds, "past the end of its storage"),
    ]:
        with pytest.raises(cw.WeightsFileError, match=message):
            cw.read_torch_state_dict(path)


# --- conversion ----------------------------------------------------------------------------------------------------


def test_conversion_transposes_torch_layout_to_channels_last(tmp_path):
    state = _crepe_state_dict(capacity=1)
    loaded = cw.read_torch_state_dict(_write_pth(tmp_path / "crepe.pth", state))
    arrays = cw.convert_state_dict(loaded)
    assert arrays["conv1.kernel"].shape == (512, 1, 32)
    assert arrays["conv2.kernel"].shape == (64, 32, 4)
    assert arrays["dense.kernel"].shape == (64, 360)
    # torch weight[o, i, k, 0] is our kernel[k, i, o]
    assert arrays["conv2.kernel"][5, 7, 3] == state["conv2.weight"][3, 7, 5, 0]
    np.testing.assert_array_equal(arrays["dense.kernel"], state["classifier.weight"].T)
    np.testing.assert_array_equal(arrays["conv4.bn_var"], state["conv4_BN.running_var"])
    assert all(value.dtype == np.float32 for value in arrays.values())


def test_state_dict_of_another_model_is_rejected():
    with pytest.raises(cw.WeightsFileError, match="missing"):
        cw.convert_state_dict({"fc.weight": np.zeros((10, 5), np.float32)})
    state = _crepe_state_dict(capacity=1)
    state["conv3.weight"] = state["conv3.weight"][:, :, :32]  # kernel width 32 instead of 64
    with pytest.raises(cw.WeightsFileError, match="conv3.weight has shape"):
        cw.convert_state_dict(state)


# --- cache files ---------------------------------------------------------------------------------------------------


def test_saved_weights_round_trip_and_a_flipped_byte_fails_the_checksum(tmp_path):
    arrays = cw.convert_state_dict(_crepe_state_dict(capacity=1))
    path = cw.save_weights(arrays, tmp_path / "sub" / "w.npz")
    loaded = cw.load_weights(path)
    assert loaded.keys() == arrays.keys()
    for name in arrays:
        np.testing.assert_array_equal(loaded[name], arrays[name])
    assert not list(path.parent.glob("*.tmp"))  # written atomically, nothing left behind
    with pytest.raises(cw.WeightsFileError, match="pinned official"):
        cw.load_weights(path, expected_sha256="0" * 64)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(cw.WeightsFileError, match="--force"):
        cw.load_weights(path)


def test_missing_cache_error_names_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("DDSP_JAX_CACHE", str(tmp_path))
    assert cw.cache_dir() == tmp_path / "crepe"
    with pytest.raises(cw.WeightsNotCachedError, match=r"python -m train\.weights fetch"):
        cw.load_cached_weights("tiny")
    assert not cw.is_cached("tiny")
    with pytest.raises(ValueError, match="model must be one of"):
        cw.load_cached_weights("medium")


def test_official_weights_in_cache_have_crepe_shapes_and_pinned_digest():
    tiny = cw.load_cached_weights("tiny")  # verifies the pinned digest on load
    full = cw.load_cached_weights("full")
    assert tiny["conv1.kernel"].shape == (512, 1, 128) and tiny["dense.kernel"].shape == (256, 360)
    assert full["conv2.kernel"].shape == (64, 1024, 128) and full["dense.kernel"].shape == (2048, 360)
    for capacity, weights in ((4, tiny), (32, full)):
        channels = [1] + [capacity * c for c in (32, 4, 4, 4, 8, 16)]
        widths = (512, 64, 64, 64, 64, 64)
        # conv kernel + bias + 4 batch-norm vectors per block, then the dense layer to 360 bins
        expected = sum(w * c_in * c_out + 5 * c_out for w, c_in, c_out in zip(widths, channels, channels[1:]))
        expected += 4 * channels[-1] * 360 + 360
        assert sum(v.size for v in weights.values()) == expected
    assert sum(v.size for v in full.values()) == 22_244_328  # the "22.2 M parameters" of the CREPE paper


def test_only_the_pinned_official_weights_enter_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DDSP_JAX_CACHE", str(tmp_path))
    not_official = cw.convert_state_dict(_crepe_state_dict(capacity=4))  # tiny's shapes, random values
    with pytest.raises(cw.WeightsFileError, match="expected the pinned one"):
        cw.cache_official_weights("tiny", not_official)
    assert not (tmp_path / "crepe").exists() or not list((tmp_path / "crepe").iterdir())
