"""LLM-TOPLA-Summary: a decoder reads the question and the team's answers, writes the answer."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ensembles.util import InputError

from ._layout import ByteTokenizer, Layout, as_codec
from ._parse import parse_choice

__all__ = ["SummaryExample", "SummaryFuser"]

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# Default learning rates: the reference's value for pretrained full fine-tuning, a larger one
# for LoRA adapters (they start at zero), and the tiny from-scratch value.
DEFAULT_LR = {"full": 5e-5, "lora": 5e-4, "scratch": 1e-3}


@dataclasses.dataclass(frozen=True)
class SummaryExample:
    """One fusion example.

    Attributes:
        question: the question text (options included for multiple choice).
        candidates: the team's answers, in team order.
        target: the text the fuser learns to write (e.g. ``"The answer is (C)."``).
        answer: the gold answer the parsed output is compared with (default: ``target``).

    Example:
        >>> SummaryExample("2+2?", ("4", "5"), "The answer is 4.").gold
        'The answer is 4.'
    """

    question: str
    candidates: tuple[str, ...]
    target: str
    answer: Any = None

    @property
    def gold(self) -> Any:
        """What a parsed prediction must equal to count as right."""
        return self.target if self.answer is None else self.answer


def _exact(text: str) -> str:
    return text.strip()


def _pure(state) -> dict:
    import jax
    from flax import nnx

    return jax.tree.map(np.asarray, nnx.to_pure_dict(state))


def _set_pure(module, filt, pure: dict) -> None:
    import jax
    import jax.numpy as jnp
    from flax import nnx

    state = nnx.state(module, filt)
    nnx.replace_by_pure_dict(state, jax.tree.map(jnp.asarray, pure))
    nnx.update(module, state)


class SummaryFuser:
    """Generative fusion (LLM-TOPLA-Summary) with a decoder-only model.

    Each example becomes one sequence ``[BOS] [BOQ] question [EOQ] [BOC0] candidate
    [EOC0] ... [ANS] target [EOS]`` (see :class:`fusers.summary.Layout`: added markers start
    at the mean embedding, candidates are cut from the left to share the context, the loss
    counts the target and ``EOS`` only). The decoder is SmolLM2-135M-Instruct (GGUF) with
    LoRA adapters by default, or fully fine-tuned, or a tiny randomly initialised decoder
    given by a :class:`fusers.lm.DecoderConfig`. Training: AdamW with linear decay and no
    warm-up over ``epochs`` (or ``max_steps``), evaluated on the validation examples every
    ``eval_every`` steps (default: once per epoch), early stopping after ``patience``
    evaluations without improvement, best state restored (a copy of the weights). With
    ``checkpoint_dir`` every evaluation writes an atomic checkpoint, and a new ``fit`` on the
    same folder resumes from it (batches depend on the seed and the step only, so a resumed
    run equals an uninterrupted one).

    Evaluation (``evaluation="generate"``, the default): greedy decoding until ``EOS`` (at
    most ``max_new_tokens``), then ``parser`` on the text. ``"teacher_forced"`` (the
    reference's): the argmax of each target position with the gold target fed in.

    Args:
        model: ``"smollm2"`` or a ``.gguf`` path (pretrained), or a
            :class:`fusers.lm.DecoderConfig` (randomly initialised, byte-level tokenizer).
        tokenizer: override the tokenizer (a transformers tokenizer or
            :class:`fusers.summary.ByteTokenizer`).
        finetune: ``"lora"`` (adapters; of the embedding table only the added marker rows
            train) or ``"full"``; ``None``: LoRA for a pretrained model, full training for a
            ``DecoderConfig``.
        lora_rank, lora_alpha, lora_targets: the adapters.
        context: maximum sequence length; target_tokens: its part reserved for the target
            (``EOS`` included); question_tokens: cap of the question's tokens.
        learning_rate: peak AdamW rate (``None``: 5e-4 for LoRA, 5e-5 for full fine-tuning
            of a pretrained model, 1e-3 from scratch).
        weight_decay: decoupled weight decay.
        epochs, batch_size, max_steps: training length (``max_steps`` caps ``epochs``).
        eval_every: steps between validation evaluations (``None``: one epoch).
        patience: evaluations without improvement before stopping (``None``: never stop).
        val_metric: what early stopping maximises on the validation examples: ``"score"``
            (:meth:`score`, the parsed answer's accuracy; for answers with one right form) or
            ``"loss"`` (minus :meth:`val_loss`, the target's mean token loss; for open-ended
            targets such as whole replies).
        evaluation: ``"generate"`` or ``"teacher_forced"``.
        max_new_tokens: generation length limit.
        eval_batch_size: rows per evaluation batch.
        parser: text → answer (default: the stripped text, compared with the target).
        seed: seed of the initialisation, the adapters and the batch order.
        checkpoint_dir: folder of resumable checkpoints (``None``: none).

    Example:
        >>> from fusers.lm import DecoderConfig
        >>> cfg = DecoderConfig(vocab_size=259, hidden_size=32, intermediate_size=64,
        ...                     num_hidden_layers=1, num_attention_heads=2)
        >>> data = [SummaryExample("q", ("1", "2"), "1")] * 8
        >>> f = SummaryFuser(model=cfg, context=24, target_tokens=4, epochs=30,
        ...                  batch_size=4).fit(data, data)
        >>> f.predict(data[:1])
        ['1']
    """

    def __init__(
        self,
        *,
        model: Any = "smollm2",
        tokenizer: Any = None,
        finetune: str | None = None,
        lora_rank: int = 8,
        lora_alpha: float = 16.0,
        lora_targets: Sequence[str] = LORA_TARGETS,
        context: int = 512,
        target_tokens: int = 16,
        question_tokens: int | None = None,
        learning_rate: float | None = None,
        weight_decay: float = 0.0,
        epochs: int = 10,
        batch_size: int = 4,
        max_steps: int | None = None,
        eval_every: int | None = None,
        patience: int | None = 3,
        val_metric: str = "score",
        evaluation: str = "generate",
        max_new_tokens: int = 16,
        eval_batch_size: int = 16,
        parser: Callable[[str], Any] | None = None,
        seed: int = 0,
        checkpoint_dir: str | os.PathLike | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.finetune = finetune
        self.lora_rank = lora_rank
        self.lora_alpha = lora_alpha
        self.lora_targets = lora_targets
        self.context = context
        self.target_tokens = target_tokens
        self.question_tokens = question_tokens
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.epochs = epochs
        self.batch_size = batch_size
        self.max_steps = max_steps
        self.eval_every = eval_every
        self.patience = patience
        self.val_metric = val_metric
        self.evaluation = evaluation
        self.max_new_tokens = max_new_tokens
        self.eval_batch_size = eval_batch_size
        self.parser = parser
        self.seed = seed
        self.checkpoint_dir = checkpoint_dir

    # ------------------------------------------------------------------ params
    def get_params(self) -> dict[str, Any]:
        """The constructor's arguments (JSON-able where possible)."""
        out = {}
        for name in (
            "finetune", "lora_rank", "lora_alpha", "context", "target_tokens",
            "question_tokens", "learning_rate", "weight_decay", "epochs", "batch_size",
            "max_steps", "eval_every", "patience", "val_metric", "evaluation", "max_new_tokens",
            "eval_batch_size", "seed",
        ):  # fmt: skip
            out[name] = getattr(self, name)
        out["lora_targets"] = list(self.lora_targets)
        out["model"] = self.model if isinstance(self.model, str) else _config_dict(self.model)
        out["parser"] = getattr(self.parser, "__name__", None)
        out["learning_rate_used"] = self._lr()
        out["finetune_used"] = self._mode()
        return out

    def _scratch(self) -> bool:
        return not isinstance(self.model, str | os.PathLike)

    def _mode(self) -> str:
        if self.finetune is None:
            return "full" if self._scratch() else "lora"
        return self.finetune

    def _lr(self) -> float:
        if self.learning_rate is not None:
            return float(self.learning_rate)
        return DEFAULT_LR["scratch" if self._scratch() else self._mode()]

    def _check(self) -> None:
        if self.finetune not in (None, "lora", "full"):
            raise InputError(f"finetune: 'lora' or 'full', got {self.finetune!r}")
        if self.val_metric not in ("score", "loss"):
            raise InputError(f"val_metric: 'score' or 'loss', got {self.val_metric!r}")
        if self.evaluation not in ("generate", "teacher_forced"):
            raise InputError(f"evaluation: 'generate' or 'teacher_forced', got {self.evaluation!r}")
        for name in ("epochs", "batch_size", "max_new_tokens", "eval_batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name}: expected a positive integer, got {v!r}")
        for name in ("max_steps", "eval_every", "patience"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
                raise InputError(f"{name}: expected a positive integer or None, got {v!r}")

    # ------------------------------------------------------------------ building
    def _build(self, n_candidates: int) -> None:
        from flax import nnx

        from fusers import lm

        if self._scratch():
            if not isinstance(self.model, lm.DecoderConfig):
                raise InputError(
                    "model: expected 'smollm2', a .gguf path or a fusers.lm.DecoderConfig, "
                    f"got {type(self.model).__name__}"
                )
            codec = as_codec(self.tokenizer or ByteTokenizer())
            if self.model.vocab_size < codec.vocab_size:
                raise InputError(
                    f"model: vocab_size {self.model.vocab_size} is smaller than the "
                    f"tokenizer's {codec.vocab_size}"
                )
            model = lm.CausalLM(self.model, rngs=nnx.Rngs(int(self.seed)))
        else:
            model, tok = lm.from_gguf(self.model, tokenizer=self.tokenizer is None)
            codec = as_codec(self.tokenizer if self.tokenizer is not None else tok)
        layout = Layout(
            n_candidates=n_candidates,
            first_marker=int(model.config.vocab_size),
            eos_id=int(codec.eos_id),
            bos_id=None if codec.bos_id is None else int(codec.bos_id),
            context=self.context,
            target_tokens=self.target_tokens,
            question_tokens=self.question_tokens,
        )
        lm.resize_token_embeddings(model, layout.vocab_size)
        lora = self._mode() == "lora"
        if lora:
            lm.apply_lora(
                model, targets=tuple(self.lora_targets), rank=self.lora_rank,
                alpha=self.lora_alpha, rngs=nnx.Rngs(int(self.seed) + 1),
            )  # fmt: skip
            wrt = nnx.Any(lm.LoRAParam, nnx.PathContains("embed_tokens"))
        else:
            wrt = nnx.Param
        self.model_, self.codec_, self.layout_ = model, codec, layout
        self._wrt, self._lora = wrt, lora

    # ------------------------------------------------------------------ encoding
    def _encode(self, examples: Sequence[SummaryExample], *, targets: bool):
        """Arrays ``ids, attention, loss`` of shape ``(n, context)`` (or the prompt part):
        prompts left-padded to the prompt length, targets right-padded after it."""
        lay, codec = self.layout_, self.codec_
        p, t = lay.prompt_length, lay.target_tokens
        width = p + t if targets else p
        n = len(examples)
        ids = np.full((n, width), codec.pad_id, np.int32)
        att = np.zeros((n, width), np.int32)
        loss = np.zeros((n, width), np.int32)
        for i, ex in enumerate(examples):
            if len(ex.candidates) != lay.n_candidates:
                raise InputError(
                    f"examples: row {i} has {len(ex.candidates)} candidates, expected "
                    f"{lay.n_candidates}"
                )
            prompt = lay.prompt(codec.encode(ex.question), [codec.encode(c) for c in ex.candidates])
            ids[i, p - len(prompt) : p] = prompt
            att[i, p - len(prompt) : p] = 1
            if targets:
                tail = lay.target(codec.encode(ex.target))
                ids[i, p : p + len(tail)] = tail
                att[i, p : p + len(tail)] = 1
                loss[i, p : p + len(tail)] = 1
        return ids, att, loss

    # ------------------------------------------------------------------ training
    def fit(
        self,
        train: Sequence[SummaryExample],
        val: Sequence[SummaryExample],
        *,
        callback: Callable[[dict[str, Any]], Any] | None = None,
    ) -> SummaryFuser:
        """Train on ``train``, early-stop on ``val`` (never trained on), restore the best state.

        Args:
            train: training examples (at least ``batch_size``).
            val: validation examples.
            callback: called with a dict (``step``, ``steps``, ``loss``, and ``val_score`` at
                evaluations) after each step; returning ``True`` stops training.

        Returns:
            ``self``, with ``model_``, ``layout_``, ``codec_``, ``history_`` (evaluations),
            ``losses_`` (per step), ``best_step_``, ``best_score_``, ``stopped_early_``,
            ``steps_run_``, ``seconds_``.
        """
        import jax
        from flax import nnx

        from fusers import lm

        self._check()
        train, val = list(train), list(val)
        if not val:
            raise InputError("val: no validation examples")
        if len(train) < self.batch_size:
            raise InputError(
                f"train: {len(train)} examples, fewer than batch_size={self.batch_size}"
            )
        m = {len(ex.candidates) for ex in train + val}
        if len(m) != 1:
            raise InputError(f"examples: candidate counts differ ({sorted(m)})")
        t0 = time.perf_counter()
        self._build(m.pop())
        ids, att, loss_mask = self._encode(train, targets=True)
        spe = len(train) // self.batch_size
        total = (
            self.epochs * spe if self.max_steps is None else min(self.max_steps, self.epochs * spe)
        )
        every = self.eval_every or spe
        opt = lm.make_optimizer(
            self.model_, learning_rate=self._lr(), total_steps=total, schedule="linear",
            weight_decay=self.weight_decay, wrt=self._wrt,
        )  # fmt: skip
        first_frozen_row = self.layout_.first_marker if self._lora else 0
        p = self.layout_.prompt_length

        step, losses, history = 0, [], []
        best_score, best_step, bad = -math.inf, 0, 0
        best_state = _pure(nnx.state(self.model_, self._wrt))
        store = None
        if self.checkpoint_dir is not None:
            from .._checkpoint import CheckpointStore

            store = CheckpointStore(self.checkpoint_dir, keep=2,
                                    fingerprint=self._fingerprint(train, val))  # fmt: skip
            if store.latest() is not None:
                template = {
                    "train": best_state,
                    "opt": _pure(nnx.state(opt)),
                    "best": best_state,
                }
                state, meta = store.restore(template)
                _set_pure(self.model_, self._wrt, state["train"])
                opt_state = nnx.state(opt)
                nnx.replace_by_pure_dict(opt_state, jax.tree.map(jax.numpy.asarray, state["opt"]))
                nnx.update(opt, opt_state)
                best_state = state["best"]
                step, losses, history = meta["step"], meta["losses"], meta["history"]
                best_score, best_step, bad = meta["best_score"], meta["best_step"], meta["bad"]
        stopped = bad >= (self.patience or math.inf)
        self.model_.train()
        while step < total and not stopped:
            epoch, k = divmod(step, spe)
            perm = np.random.default_rng([int(self.seed), epoch]).permutation(len(train))
            rows = perm[k * self.batch_size : (k + 1) * self.batch_size]
            batch = lm.LMBatch(
                jax.numpy.asarray(ids[rows]), jax.numpy.asarray(att[rows]),
                jax.numpy.asarray(loss_mask[rows]),
            )  # fmt: skip
            loss = float(_train_step(self.model_, opt, batch, p, first_frozen_row))
            losses.append(loss)
            step += 1
            info: dict[str, Any] = {"step": step, "steps": total, "loss": loss}
            if step % every == 0 or step == total:
                score = self.score(val) if self.val_metric == "score" else -self.val_loss(val)
                self.model_.train()
                history.append({"step": step, "loss": loss, "val_score": score})
                info["val_score"] = score
                if score > best_score:
                    best_score, best_step, bad = score, step, 0
                    best_state = _pure(nnx.state(self.model_, self._wrt))
                else:
                    bad += 1
                stopped = self.patience is not None and bad >= self.patience
                if store is not None:
                    store.save(
                        step,
                        {"train": _pure(nnx.state(self.model_, self._wrt)),
                         "opt": _pure(nnx.state(opt)), "best": best_state},
                        {"step": step, "losses": losses, "history": history,
                         "best_score": best_score, "best_step": best_step, "bad": bad},
                    )  # fmt: skip
            if callback is not None and callback(info):
                break
        if store is not None:
            store.close()
        _set_pure(self.model_, self._wrt, best_state)
        self.model_.eval()
        self.losses_ = [float(x) for x in losses]
        self.history_ = history
        self.best_step_ = int(best_step)
        self.best_score_ = float(best_score)
        self.stopped_early_ = bool(stopped and step < total)
        self.steps_run_ = int(step)
        self.total_steps_ = int(total)
        self.seconds_ = time.perf_counter() - t0
        return self

    def _fingerprint(self, train, val) -> str:
        h = hashlib.sha256()
        h.update(json.dumps(self.get_params(), sort_keys=True, default=str).encode())
        for ex in train + val:
            h.update(json.dumps([ex.question, list(ex.candidates), ex.target]).encode())
        return h.hexdigest()[:16]

    # ------------------------------------------------------------------ saving
    def _weights(self) -> dict[str, np.ndarray]:
        """The trained weights, flat; with LoRA only the marker rows of the embedding."""
        from flax import nnx

        from .._checkpoint import tree_to_arrays

        arrays = tree_to_arrays(_pure(nnx.state(self.model_, self._wrt)))
        if self._lora:
            for k in arrays:
                if "embed_tokens" in k:
                    arrays[k] = arrays[k][self.layout_.first_marker :]
        return arrays

    def training_record(self) -> dict[str, Any]:
        """How training went: best step and its val accuracy, steps run of the total, whether
        early stopping ended it, and the val history (what the CLI and benches report).

        Example:
            >>> SummaryFuser().training_record()
            Traceback (most recent call last):
            ...
            ensembles.util.InputError: SummaryFuser: call fit() first
        """
        self._fitted()
        return {
            "val_metric": self.val_metric,
            "best_step": self.best_step_,
            "best_val_accuracy": self.best_score_,
            "steps_run": self.steps_run_,
            "total_steps": self.total_steps_,
            "stopped_early": self.stopped_early_,
            "history": self.history_,
        }

    def save(self, folder: str | os.PathLike) -> Path:
        """Write the fitted fuser to ``folder``: ``summary_fuser.json`` (settings, layout,
        training record) and ``weights/`` (the trained weights: adapters and marker rows
        with LoRA, every parameter otherwise). The base model is not copied: loading reads
        it again from the same source.

        Returns:
            The folder.
        """
        from ensembles.util import check_writable_dir, write_json_atomic

        from .._checkpoint import save_arrays

        self._fitted()
        folder = Path(folder)
        check_writable_dir(folder, name="folder")
        digest = save_arrays(folder / "weights", self._weights())
        params = self.get_params()
        params["model"] = self.model if isinstance(self.model, str) else str(self.model)
        doc = {
            "class": "SummaryFuser",
            "params": params,
            "model": self.model if isinstance(self.model, str) else self.model.to_dict(),
            "scratch": self._scratch(),
            "parser": _PARSERS_BY_FN.get(self.parser),
            "n_candidates": self.layout_.n_candidates,
            "weights_sha256": digest,
            "training": {
                "best_step": self.best_step_,
                "best_score": self.best_score_,
                "steps_run": self.steps_run_,
                "history": self.history_,
            },
        }
        write_json_atomic(folder / FUSER_FILE, doc)
        return folder

    @classmethod
    def load(cls, folder: str | os.PathLike) -> SummaryFuser:
        """Read a fuser written by :meth:`save` (the base model is read from its source).

        Raises:
            InputError: a missing or corrupted folder, or one written for another model.
        """
        from flax import nnx

        from fusers import lm

        from .._checkpoint import arrays_to_tree, load_arrays, tree_to_arrays

        folder = Path(folder)
        meta_path = folder / FUSER_FILE
        if not meta_path.is_file():
            raise InputError(f"{folder}: not a saved SummaryFuser (no {FUSER_FILE})")
        try:
            doc = json.loads(meta_path.read_text(encoding="utf-8"))
            params = dict(doc["params"])
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise InputError(f"{meta_path}: unreadable ({type(exc).__name__})") from None
        model = lm.DecoderConfig.from_dict(doc["model"]) if doc["scratch"] else doc["model"]
        kwargs = {k: params[k] for k in _SAVED_PARAMS if k in params}
        kwargs["lora_targets"] = tuple(params.get("lora_targets", LORA_TARGETS))
        fuser = cls(model=model, parser=_PARSERS.get(doc.get("parser")), **kwargs)
        fuser._build(int(doc["n_candidates"]))
        arrays = load_arrays(folder / "weights", digest=doc.get("weights_sha256"))
        template = _pure(nnx.state(fuser.model_, fuser._wrt))
        if fuser._lora:
            full = tree_to_arrays(template)
            for k in arrays:
                if "embed_tokens" in k and k in full:
                    table = full[k].copy()
                    table[fuser.layout_.first_marker :] = arrays[k]
                    arrays[k] = table
        _set_pure(fuser.model_, fuser._wrt, arrays_to_tree(template, arrays, where=str(folder)))
        fuser.model_.eval()
        tr = doc.get("training", {})
        fuser.best_step_ = tr.get("best_step")
        fuser.best_score_ = tr.get("best_score")
        fuser.steps_run_ = tr.get("steps_run")
        fuser.history_ = tr.get("history", [])
        return fuser

    # ------------------------------------------------------------------ inference
    def _fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise InputError("SummaryFuser: call fit() first")

    def generate(
        self, examples: Sequence[SummaryExample], *, evaluation: str | None = None
    ) -> list[str]:
        """The fused text of each example (greedy, or teacher-forced argmax).

        Args:
            examples: the examples (targets are used only by ``"teacher_forced"``).
            evaluation: override the fuser's ``evaluation``.

        Returns:
            One string per example.
        """
        self._fitted()
        mode = self.evaluation if evaluation is None else evaluation
        if mode not in ("generate", "teacher_forced"):
            raise InputError(f"evaluation: 'generate' or 'teacher_forced', got {mode!r}")
        examples = list(examples)
        out: list[str] = []
        bs = self.eval_batch_size
        for start in range(0, len(examples), bs):
            chunk = examples[start : start + bs]
            pad = bs - len(chunk)
            chunk_full = chunk + [chunk[0]] * pad  # static batch shape: one compilation
            if mode == "generate":
                toks = self._greedy(chunk_full)
            else:
                toks = self._teacher_forced(chunk_full)
            out += [self._text(t) for t in toks[: len(chunk)]]
        return out

    def _text(self, tokens) -> str:
        eos = self.layout_.eos_id
        toks = list(tokens)
        if eos in toks:
            toks = toks[: toks.index(eos)]
        return self.codec_.decode(toks)

    def _greedy(self, examples) -> list[list[int]]:
        from fusers import lm

        ids, att, _ = self._encode(examples, targets=False)
        r = lm.generate(
            self.model_, ids, attention_mask=att, max_new_tokens=self.max_new_tokens,
            stop_tokens=[self.layout_.eos_id], pad_token_id=int(self.codec_.pad_id),
        )  # fmt: skip
        return r.to_lists()

    def _teacher_forced(self, examples) -> list[list[int]]:
        import jax.numpy as jnp

        ids, att, loss = self._encode(examples, targets=True)
        p = self.layout_.prompt_length
        pred = np.asarray(_target_argmax(self.model_, jnp.asarray(ids), jnp.asarray(att), p))
        return [pred[i][loss[i, p:] > 0].tolist() for i in range(len(examples))]

    def predict(self, examples: Sequence[SummaryExample]) -> list[Any]:
        """Parsed answers (``parser`` applied to :meth:`generate`'s texts)."""
        parse = self.parser or _exact
        return [parse(t) for t in self.generate(examples)]

    def val_loss(self, examples: Sequence[SummaryExample]) -> float:
        """Mean token loss (natural log) of the examples' targets and ``EOS``, teacher-forced.

        Tokens are pooled over all examples (a long target weighs more than a short one).
        """
        import jax.numpy as jnp

        from fusers import lm

        self._fitted()
        examples = list(examples)
        if not examples:
            raise InputError("examples: none to score")
        self.model_.eval()
        p, bs = self.layout_.prompt_length, self.eval_batch_size
        total = count = 0.0
        for start in range(0, len(examples), bs):
            chunk = examples[start : start + bs]
            ids, att, mask = self._encode(chunk + [chunk[0]] * (bs - len(chunk)), targets=True)
            mask[len(chunk) :] = 0  # padding rows (static batch shape) do not count
            batch = lm.LMBatch(jnp.asarray(ids), jnp.asarray(att), jnp.asarray(mask))
            n = float(mask[:, p:].sum())
            total += float(_eval_loss(self.model_, batch, p)) * n
            count += n
        return total / max(count, 1.0)

    def score(self, examples: Sequence[SummaryExample]) -> float:
        """Accuracy: the share of examples whose parsed answer equals ``example.gold``."""
        examples = list(examples)
        if not examples:
            raise InputError("examples: none to score")
        pred = self.predict(examples)
        return float(np.mean([p == ex.gold for p, ex in zip(pred, examples, strict=True)]))


FUSER_FILE = "summary_fuser.json"
_SAVED_PARAMS = (
    "finetune", "lora_rank", "lora_alpha", "context", "target_tokens", "question_tokens",
    "learning_rate", "weight_decay", "epochs", "batch_size", "max_steps", "eval_every",
    "patience", "val_metric", "evaluation", "max_new_tokens", "eval_batch_size", "seed",
)  # fmt: skip


_PARSERS: dict[str, Callable[[str], Any]] = {"choice": parse_choice}
_PARSERS_BY_FN = {fn: name for name, fn in _PARSERS.items()}


def _config_dict(cfg: Any) -> Any:
    try:
        return dataclasses.asdict(cfg)
    except TypeError:
        return repr(cfg)


def _loss(model, batch, prompt_length: int):
    """Mean token loss of the target block (positions ``prompt_length`` onwards)."""
    import jax.numpy as jnp

    from fusers import lm

    ids = batch.input_ids
    hidden, _ = model.hidden_states(ids[:, :-1], attention_mask=batch.attention_mask[:, :-1])
    logits = model.logits(hidden[:, prompt_length - 1 :])
    weights = batch.loss_mask[:, prompt_length:].astype(jnp.float32)
    return lm.causal_lm_loss(logits, ids[:, prompt_length:], mask=weights)


def _make_train_step():
    import jax
    import jax.numpy as jnp
    from flax import nnx

    @nnx.jit(static_argnames=("prompt_length", "first_frozen_row"))
    def step(model, optimizer, batch, prompt_length: int, first_frozen_row: int):
        diff = nnx.DiffState(0, optimizer.wrt)
        loss, grads = nnx.value_and_grad(_loss, argnums=diff)(model, batch, prompt_length)
        if first_frozen_row:
            # LoRA: of the embedding table only the added marker rows train.
            def keep_new(path, g):
                if any(getattr(k, "key", None) == "embed_tokens" for k in path):
                    rows = jnp.arange(g.shape[0]) >= first_frozen_row
                    return g * rows[:, None].astype(g.dtype)
                return g

            grads = jax.tree_util.tree_map_with_path(keep_new, grads)
        optimizer.update(model, grads)
        return loss

    return step


def _make_eval_loss():
    from flax import nnx

    return nnx.jit(_loss, static_argnames=("prompt_length",))


def _make_target_argmax():
    import jax.numpy as jnp
    from flax import nnx

    @nnx.jit(static_argnames=("prompt_length",))
    def argmax(model, ids, att, prompt_length: int):
        hidden, _ = model.hidden_states(ids[:, :-1], attention_mask=att[:, :-1])
        logits = model.logits(hidden[:, prompt_length - 1 :])
        return jnp.argmax(logits, axis=-1)

    return argmax


class _Lazy:
    """Build a jitted function on first use (keeps ``import fusers.summary`` free of JAX)."""

    def __init__(self, make) -> None:
        self._make, self._fn = make, None

    def __call__(self, *args, **kwargs):
        if self._fn is None:
            self._fn = self._make()
        return self._fn(*args, **kwargs)


_train_step = _Lazy(_make_train_step)
_target_argmax = _Lazy(_make_target_argmax)
_eval_loss = _Lazy(_make_eval_loss)
