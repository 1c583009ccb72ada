"""The llama.cpp model's prompt-prefix states: the cache after reading an article, copied to RAM, put back, and
saved to disk (`.npz`, no pickle) so that a fresh process skips reading the article again."""

from __future__ import annotations

import hashlib
import logging
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


@dataclass
class Prefix:
    """A prompt prefix the model has read: its tokens, and sequence 0 of the KV cache after them."""

    tokens: list[int]
    state: Any  # a ctypes byte buffer, as llama_state_seq_set_data takes it

    @property
    def nbytes(self) -> int:
        return len(self.state)


def snapshot(llm) -> Prefix | None:
    """Copy the cache of what the model has read so far to RAM (None when llama.cpp gives less than it said)."""
    import ctypes

    import llama_cpp

    size = llama_cpp.llama_state_seq_get_size(llm._ctx.ctx, 0)
    buffer = (ctypes.c_uint8 * size)()
    if llama_cpp.llama_state_seq_get_data(llm._ctx.ctx, buffer, size, 0) != size:
        return None
    return Prefix(list(llm.input_ids[: llm.n_tokens]), buffer)


def put_back(llm, prefix: Prefix) -> bool:
    """Make the cache hold prefix again; False (and an empty cache) when llama.cpp refuses it."""
    import llama_cpp

    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    if llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, prefix.state, prefix.nbytes, 0) != prefix.nbytes:
        llm.reset()
        return False
    n = len(prefix.tokens)
    llm.input_ids[:n] = prefix.tokens
    llm.n_tokens = n
    llm._requires_eval = True  # no live logits: the next prompt's suffix is decoded first
    return True


def save_prefix(prefix: Prefix, path: Path) -> None:
    """Write prefix to path atomically: a process killed mid-write leaves no half file under the real name."""
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("wb") as handle:
        np.savez(
            handle,
            tokens=np.asarray(prefix.tokens, dtype=np.int32),
            state=np.frombuffer(prefix.state, dtype=np.uint8),
        )
    tmp.replace(path)


def load_prefix(path: Path) -> Prefix:
    """Read a prefix saved by save_prefix (no pickle: a damaged or foreign file raises, it never runs code)."""
    import ctypes

    import numpy as np

    with np.load(path, allow_pickle=False) as data:
        tokens = data["tokens"].astype(int).tolist()
        state = data["state"]
        buffer = (ctypes.c_uint8 * state.size).from_buffer_copy(state.tobytes())
    return Prefix(tokens, buffer)


# Changes whenever what a saved prefix holds changes (3: read with a question, as llama.cpp decodes a prompt), so
# older files are read again instead of being put back.
PREFIX_FORMAT = 3


class PrefixStore:
    """The prefixes read so far, by system prompt: the last `keep` in RAM, every one saved on disk under folder.

    A file's name hashes the format, the model file (name and size), the repacking switch and the system prompt, so
    a state is never put back under another model or another text. Without a folder nothing outlives the process.
    The files take at most budget_mb: past it, the least recently used go (states of an older format or model, or
    of articles since removed, are never used again).
    """

    def __init__(self, folder: str | Path | None, model_path: str, repack: bool, keep: int, budget_mb: int = 4000):
        self.folder = Path(folder) if folder else None
        self.model_path = Path(model_path)
        self.repack = repack
        self.keep = max(1, keep)
        self.budget = budget_mb * 1_000_000
        self._ram: OrderedDict[str, Prefix] = OrderedDict()  # most recently used last

    def path(self, system: str) -> Path | None:
        """Where the prefix of system is saved (None without a folder)."""
        if self.folder is None:
            return None
        size = self.model_path.stat().st_size if self.model_path.exists() else 0
        what = (PREFIX_FORMAT, self.model_path.name, size, self.repack, system)
        return self.folder / f"prefix-{hashlib.sha256(repr(what).encode()).hexdigest()[:24]}.npz"

    def in_ram(self, system: str) -> bool:
        return system in self._ram

    def has(self, system: str) -> bool:
        """True when the prefix of system is in RAM or on disk."""
        path = self.path(system)
        return system in self._ram or (path is not None and path.is_file())

    def get(self, system: str) -> Prefix | None:
        """The prefix of system: from RAM, or from disk (then kept in RAM); None when never read, or damaged."""
        prefix = self._ram.get(system)
        if prefix is None:
            path = self.path(system)
            if path is None or not path.is_file():
                return None
            try:
                prefix = load_prefix(path)
            except Exception as exc:  # a damaged state file is only a lost shortcut
                log.warning("Ignoring unreadable model state %s (%s); the text is read again.", path, exc)
                path.unlink(missing_ok=True)
                return None
            self._remember(system, prefix)
            os.utime(path)  # recently used: the last to be pruned
        self._ram.move_to_end(system)
        return prefix

    def put(self, system: str, prefix: Prefix) -> None:
        """Keep prefix in RAM and save it on disk."""
        self._remember(system, prefix)
        path = self.path(system)
        if path is not None:
            save_prefix(prefix, path)
            self.prune(keep=path)

    def prune(self, keep: Path | None = None) -> list[Path]:
        """Delete the least recently used saved states past the disk budget (never keep); return those deleted."""
        if self.folder is None:
            return []
        files = []
        for path in self.folder.glob("prefix-*.npz"):
            try:
                files.append((path.stat().st_mtime, path.stat().st_size, path))
            except OSError:  # removed meanwhile by another process
                continue
        total, deleted = sum(size for _, size, _ in files), []
        for _, size, path in sorted(files, key=lambda f: f[0]):
            if total <= self.budget:
                break
            if path != keep:
                path.unlink(missing_ok=True)
                total -= size
                deleted.append(path)
        return deleted

    def forget(self, system: str) -> None:
        """Drop the prefix of system from RAM and disk."""
        self._ram.pop(system, None)
        path = self.path(system)
        if path is not None:
            path.unlink(missing_ok=True)

    def drop_ram(self) -> None:
        """Forget what is in RAM only (as a fresh process would start)."""
        self._ram.clear()

    def _remember(self, system: str, prefix: Prefix) -> None:
        self._ram[system] = prefix
        self._ram.move_to_end(system)
        while len(self._ram) > self.keep:
            self._ram.popitem(last=False)  # still on disk: put back from there when needed again
