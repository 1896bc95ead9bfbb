"""Sentence-transformers models through ONNX Runtime, and the English model packaged in pieces."""

from __future__ import annotations

import io
import logging
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from knowledge_base.embeddings import (INT8_SUFFIX, MPNET_MODEL, Embedder, OnnxEncoder, join_pieces, packaged_mpnet,
                                       quantize_int8)


def split_zip(tmp_path: Path, files: dict[str, bytes], pieces: int = 3) -> list[Path]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    data = buffer.getvalue()
    size = -(-len(data) // pieces)
    paths = []
    for number in range(pieces):
        path = tmp_path / f"model.zip.{number + 1:03d}"
        path.write_bytes(data[number * size:(number + 1) * size])
        paths.append(path)
    return paths


def test_the_pieces_are_joined_into_the_model_directory(tmp_path):
    weights = np.random.default_rng(0).bytes(200_000)  # incompressible, so every piece holds some of it
    pieces = split_zip(tmp_path, {"model/config.json": b"{}", "model/1_Pooling/config.json": b"{\"mean\": true}",
                                  "model/model.safetensors": weights, "model/desktop.ini": b"[.ShellClassInfo]",
                                  "elsewhere/x.txt": b"not ours"})
    target = join_pieces(pieces, tmp_path / "out" / "model")
    assert (target / "model.safetensors").read_bytes() == weights
    assert (target / "1_Pooling" / "config.json").read_bytes() == b"{\"mean\": true}"
    assert not (target / "desktop.ini").exists() and not (tmp_path / "out" / "x.txt").exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model"]  # no partial directory left


def test_a_damaged_piece_fails_and_leaves_nothing(tmp_path):
    weights = np.random.default_rng(1).bytes(200_000)
    pieces = split_zip(tmp_path, {"model/model.safetensors": weights})
    damaged = bytearray(pieces[1].read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    pieces[1].write_bytes(bytes(damaged))
    with pytest.raises((zipfile.BadZipFile, OSError)):  # a CRC or deflate error
        join_pieces(pieces, tmp_path / "out" / "model")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())
    with pytest.raises(zipfile.BadZipFile):  # a piece missing
        join_pieces(pieces[:2], tmp_path / "out" / "model")


def test_the_packaged_mpnet_is_a_sentence_model_once_joined():
    path = packaged_mpnet()
    assert path is not None, "the all-mpnet-base-v2 pieces are dependencies of kefu"
    assert path.name == MPNET_MODEL
    for name in ("model.safetensors", "modules.json", "tokenizer.json", "1_Pooling/config.json"):
        assert (path / name).exists()
    assert packaged_mpnet() == path  # joined once, then found


def tiny_mpnet(directory: Path, layers: int) -> Path:
    """A randomly initialised MPNet sentence model with the packaged tokenizer (no token type ids)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    tokenizer = AutoTokenizer.from_pretrained(str(packaged_mpnet()))
    config = MPNetConfig(vocab_size=tokenizer.vocab_size + 1, hidden_size=32, num_hidden_layers=layers,
                         num_attention_heads=2, intermediate_size=64)
    raw = directory / "raw"
    MPNetModel(config).save_pretrained(raw, safe_serialization=True)
    tokenizer.save_pretrained(raw)
    transformer = Transformer(str(raw), max_seq_length=64)
    SentenceTransformer(modules=[transformer, Pooling(32, "mean")], device="cpu").save(str(directory / "st"))
    return directory / "st"


@pytest.mark.parametrize("layers", [2, 12])
def test_a_model_without_token_type_ids_runs_through_onnx(tmp_path, layers):
    source = tiny_mpnet(tmp_path, layers)
    embedder = Embedder(str(source), onnx_dir=tmp_path / "onnx")
    assert embedder.onnx is not None, "the export must follow the inputs the model reads"
    if layers < 12:  # exporting leaves the model's dropout off (its other PyTorch calls are not all encode's)
        OnnxEncoder._export(embedder.model, tmp_path / "again.onnx")
        assert not embedder.model[0].auto_model.training
    texts = ["where is my parcel", "do you ship to Hong Kong", "how much is shipping"]
    got = embedder.encode(texts)
    expected = embedder.model.encode(texts, normalize_embeddings=True)
    assert got.shape == (3, 32) and np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    threads = embedder.onnx.session.get_session_options().intra_op_num_threads
    if layers < 12:  # a float graph gives PyTorch's vectors, and keeps the model's name
        assert embedder.name == str(source)
        assert np.abs(got - expected).max() < 1e-4
        assert threads == 1
    else:  # a deep model's graph has int8 weights: near PyTorch, indexed under another name; two threads
        assert embedder.name == f"{source}{INT8_SUFFIX}"
        assert threads == min(2, os.cpu_count() or 1)
        assert sorted(p.name.endswith("-int8.onnx") for p in (tmp_path / "onnx").iterdir()) == [False, True]
        assert (got * expected).sum(1).mean() > 0.7


def test_quantizing_says_nothing_on_the_root_logger(tmp_path, caplog):
    """ONNX Runtime's quantizer warns every first start that a model should be pre-processed (advice for
    image models): kefu's consoles do not show it, and the root logger's level is left as it was."""
    import onnx
    from onnx import TensorProto, helper

    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], np.eye(4, dtype=np.float32).ravel().tolist())
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])], [weight])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "f.onnx"))
    root = logging.getLogger()
    level = root.level
    with caplog.at_level(logging.INFO):
        quantize_int8(tmp_path / "f.onnx", tmp_path / "q.onnx")
    assert (tmp_path / "q.onnx").exists()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.message for r in caplog.records]
    assert root.level == level
