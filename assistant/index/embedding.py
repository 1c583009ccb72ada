"""The embedding model: sentence-transformers' MiniLM, run through onnxruntime once exported, so answering never
imports torch (about 6 s of a fresh process's start)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from pathlib import Path

from langchain_core.embeddings import Embeddings

from .models import ModelError, embedding_model_path, force_offline
from ..settings import Settings

log = logging.getLogger(__name__)

EXPORT_FILE = "model.onnx"
STAMP_FILE = "export.json"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def embedding_fingerprint(settings: Settings) -> dict:
    """Identify the embedding model cheaply (name and weight-file size) for the manifest."""
    path = Path(embedding_model_path(settings))
    return {"name": path.name, "weights_bytes": sum(w.stat().st_size for w in _weight_files(path))}


def _weight_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin"))


def _weights_stamp(folder: Path) -> list:
    """What the export was made from: each weight file's name, size and mtime (cheap to check at every start)."""
    return [[w.name, w.stat().st_size, w.stat().st_mtime_ns] for w in _weight_files(folder)]


def _weights_digest(folder: Path) -> str:
    """A digest of the weight files' content: the same weights installed twice (two clones sharing one cache)
    have other mtimes, and must not take turns exporting over each other."""
    digest = hashlib.sha256()
    for w in _weight_files(folder):
        with w.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def _made_from(stamp: dict, source: Path) -> bool:
    """True when stamp describes these very weights: by name, size and mtime, else by content."""
    now = _weights_stamp(source)
    if stamp.get("weights") == now:
        return True
    same_files = [w[:2] for w in stamp.get("weights") or []] == [w[:2] for w in now]
    return same_files and bool(stamp.get("digest")) and stamp["digest"] == _weights_digest(source)


def _read_config(folder: Path) -> tuple[int, str]:
    """The model's max_seq_length and pooling mode ("mean" or "cls"), as sentence-transformers would use them."""
    config = json.loads((folder / "sentence_bert_config.json").read_text())
    pooling_file = next(folder.glob("*_Pooling/config.json"), None)
    pooling = json.loads(pooling_file.read_text()) if pooling_file else {"pooling_mode_mean_tokens": True}
    modes = [k for k, on in pooling.items() if k.startswith("pooling_mode_") and on]
    if modes == ["pooling_mode_mean_tokens"]:
        return int(config["max_seq_length"]), "mean"
    if modes == ["pooling_mode_cls_token"]:
        return int(config["max_seq_length"]), "cls"
    raise ModelError(f"pooling {modes} is not supported by the onnxruntime path")


def export_dir(settings: Settings) -> Path:
    """Where the ONNX export of the configured embedding model lives (one folder per model and weight size)."""
    fingerprint = embedding_fingerprint(settings)
    return Path(settings.paths.cache_dir) / "onnx" / f"{fingerprint['name']}-{fingerprint['weights_bytes']}"


class OnnxEmbeddings(Embeddings):
    """A sentence-transformers model exported to ONNX: tokenizers for the text, onnxruntime for the transformer,
    then the same pooling and normalisation as sentence-transformers."""

    def __init__(self, folder: Path, source: Path, threads: int | None = None, batch_size: int = 32):
        import onnxruntime
        from tokenizers import Tokenizer

        self.max_length, self.pooling = _read_config(source)
        self.batch_size = batch_size
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = onnxruntime.InferenceSession(
            str(folder / EXPORT_FILE), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
        self.tokenizer.enable_truncation(self.max_length)
        self.tokenizer.enable_padding()

    def _embed(self, texts: list[str]):
        import numpy as np

        encoded = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encoded], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encoded], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feeds)[0]
        if self.pooling == "cls":
            vectors = hidden[:, 0]
        else:
            vectors = (hidden * mask[..., None]).sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            vectors.extend(self._embed(texts[start : start + self.batch_size]).tolist())
        return vectors

    def embed_query(self, text: str) -> list[float]:
        return self._embed([text])[0].tolist()


def _torch_embeddings(source: str):
    force_offline()
    from langchain_huggingface import HuggingFaceEmbeddings

    return HuggingFaceEmbeddings(
        model_name=source, model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True}
    )


def load_onnx(settings: Settings) -> OnnxEmbeddings | None:
    """The exported model when there is a complete export of these very weights; None otherwise."""
    source = Path(embedding_model_path(settings))
    folder = export_dir(settings)
    try:
        stamp = json.loads((folder / STAMP_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or not _made_from(stamp, source):
        return None
    try:
        return OnnxEmbeddings(folder, source, settings.generation.llm_threads)
    except Exception as exc:  # a damaged export only costs the faster start: say how to redo it
        log.warning("Ignoring the ONNX export in %s (%s); run `assistant warm` to export it again.", folder, exc)
        return None


def load_embeddings(settings: Settings) -> Embeddings:
    """The LangChain embeddings of the configured model: onnxruntime when exported, else sentence-transformers."""
    if settings.index.embedding_runtime != "torch":
        onnx = load_onnx(settings)
        if onnx is not None:
            return onnx
        if settings.index.embedding_runtime == "onnx":
            raise ModelError(
                f"No usable ONNX export of the embedding model in {export_dir(settings)}. Run `assistant warm` "
                "to export it, or set ASSISTANT_EMBEDDING_RUNTIME=auto."
            )
    return _torch_embeddings(embedding_model_path(settings))


def export_onnx(settings: Settings, samples: list[str]) -> str:
    """Export the embedding model to ONNX (needs torch, once, at set-up); return what was done.

    The export is kept only when it embeds every sample with cosine similarity at least settings.onnx_min_cosine to
    sentence-transformers' own vectors, so an index built either way stays valid.
    """
    if settings.index.embedding_runtime == "torch":
        return "skipped (embedding_runtime is torch)"
    if load_onnx(settings) is not None:
        return "reused"
    source = Path(embedding_model_path(settings))
    folder = export_dir(settings)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _write_onnx(source, partial / EXPORT_FILE)
        cosine = _min_cosine(OnnxEmbeddings(partial, source), _torch_embeddings(str(source)), samples)
    except (ImportError, ModelError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        return f"not exported ({exc}); answering uses sentence-transformers"
    if cosine < settings.index.onnx_min_cosine:
        shutil.rmtree(partial, ignore_errors=True)
        return (
            f"not kept (cosine {cosine:.5f} < {settings.index.onnx_min_cosine}); answering uses sentence-transformers"
        )
    (partial / STAMP_FILE).write_text(
        json.dumps({"weights": _weights_stamp(source), "digest": _weights_digest(source), "min_cosine": cosine})
    )
    shutil.rmtree(folder, ignore_errors=True)
    partial.replace(folder)
    return f"exported (min cosine {cosine:.5f} on {len(samples)} passages)"


def _min_cosine(onnx: Embeddings, reference: Embeddings, samples: list[str]) -> float:
    import numpy as np

    ours = np.array(onnx.embed_documents(samples))
    theirs = np.array(reference.embed_documents(samples))
    return float((ours * theirs).sum(axis=1).min())


def _write_onnx(source: Path, target: Path) -> None:
    """Trace the transformer (without pooling) to ONNX with dynamic batch and sequence axes."""
    import torch
    from transformers import AutoModel

    model = AutoModel.from_pretrained(str(source)).eval()

    class LastHidden(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.last_hidden_state

    dummy = torch.ones(2, 8, dtype=torch.long)
    axes = {name: {0: "batch", 1: "sequence"} for name in (*ONNX_INPUTS, "last_hidden_state")}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on ops it rewrites: nothing a user can act on
        torch.onnx.export(
            LastHidden(),
            (dummy, dummy, torch.zeros_like(dummy)),
            str(target),
            input_names=list(ONNX_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
