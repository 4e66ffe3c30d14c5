"""The GGUF scalar reader agrees with `gguf.GGUFReader` and refuses what it cannot read."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest

from convassist.ml.training.gguf_header import GGUFHeaderError, read_scalars


def reader_scalars(path: Path) -> dict[str, object]:
    reader = gguf.GGUFReader(str(path))
    return {
        name: field.contents()
        for name, field in reader.fields.items()
        if len(field.types) == 1 and not name.startswith("GGUF.")
    }


def write_rich_gguf(path: Path, endianess: gguf.GGUFEndian = gguf.GGUFEndian.LITTLE) -> Path:
    """Every kind of metadata value, arrays of numbers and of strings among the scalars."""
    writer = gguf.GGUFWriter(str(path), "qwen3", endianess=endianess)
    writer.add_token_list(["<s>", "</s>", "héllo", ""])
    writer.add_token_scores([0.0, -1.5, 2.25, 3.0])
    writer.add_block_count(2)
    writer.add_context_length(4096)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_bool("qwen3.flag", True)
    writer.add_int8("qwen3.small", -3)
    writer.add_uint64("qwen3.big", 2**40)
    writer.add_float64("qwen3.precise", 0.1)
    writer.add_string("qwen3.note", "naïve")
    writer.add_array("qwen3.nested", [[1, 2], [3]])
    writer.add_key_length(128)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("endianess", [gguf.GGUFEndian.LITTLE, gguf.GGUFEndian.BIG])
def test_it_reads_the_scalars_the_library_reads_and_skips_arrays(
    tmp_path: Path, endianess: gguf.GGUFEndian
) -> None:
    path = write_rich_gguf(tmp_path / "rich.gguf", endianess)
    scalars = read_scalars(path)
    assert scalars == reader_scalars(path)
    assert scalars["general.architecture"] == "qwen3"
    assert scalars["qwen3.attention.key_length"] == 128
    assert scalars["qwen3.note"] == "naïve" and scalars["qwen3.flag"] is True
    assert scalars["qwen3.big"] == 2**40 and scalars["qwen3.small"] == -3
    assert "tokenizer.ggml.tokens" not in scalars and "qwen3.nested" not in scalars


def test_it_reads_the_bundled_model_like_the_library(default_model_path: Path) -> None:
    assert read_scalars(default_model_path) == reader_scalars(default_model_path)


def test_a_file_that_is_not_gguf_or_is_cut_short_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "model.bin"
    other.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(GGUFHeaderError, match="not a GGUF file"):
        read_scalars(other)
    whole = write_rich_gguf(tmp_path / "rich.gguf").read_bytes()
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(whole[:60])
    with pytest.raises(GGUFHeaderError, match="ends early"):
        read_scalars(cut)
    corrupt = tmp_path / "corrupt.gguf"
    corrupt.write_bytes(
        b"GGUF"
        + (3).to_bytes(4, "little")
        + bytes(8)
        + (1).to_bytes(8, "little")
        + (2**60).to_bytes(8, "little")
    )
    with pytest.raises(GGUFHeaderError, match="corrupt"):
        read_scalars(corrupt)
    old = tmp_path / "v1.gguf"
    old.write_bytes(b"GGUF" + (1).to_bytes(4, "little") + bytes(16))
    with pytest.raises(GGUFHeaderError, match="version 1"):
        read_scalars(old)
