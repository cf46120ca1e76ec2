"""Helpers for model manager tests: build model folders and compare them byte for byte."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from pathlib import Path

Tree = Mapping[str, bytes]

#: A small model with nested folders, an empty file and a name with a space.
SMALL_MODEL: dict[str, bytes] = {
    "config.json": b'{"hidden": 8}\n',
    "tokenizer/vocab.txt": b"a\nb\nc\n",
    "weights/layer 0/w.bin": bytes(range(256)) * 4,
    "weights/empty.bin": b"",
}


def write_tree(root: Path, files: Tree, executable: tuple[str, ...] = ()) -> Path:
    """Create ``root`` holding ``files`` ({relative posix path: content})."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        if rel in executable:
            path.chmod(0o755)
    return root


def read_tree(root: Path) -> dict[str, bytes]:
    """{relative posix path: content} of every file under ``root``."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def sha256(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def random_bytes(size: int, seed: int) -> bytes:
    """Incompressible, reproducible content (a fixed seed keeps failures reproducible)."""
    return random.Random(seed).randbytes(size)
