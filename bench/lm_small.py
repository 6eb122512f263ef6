"""Train a small Llama-style decoder from scratch on real LLM answer texts (CPU-friendly).

Run from the repository root::

    python -m bench.lm_small                 # 5-minute budget
    python -m bench.lm_small --minutes 20    # longer

Data: ``../shared/data/mmlu_pro_texts.jsonl.gz`` (or ``$FOCAL_DATA_DIR``, or ``--data``): 3,000
MMLU-Pro questions with their options and six LLMs' chain-of-thought answers. Each question block
(question + lettered options) and each answer text is one document; 5 % of the questions (seeded)
and their answers are held out for validation. Skips cleanly, exit status 0, when the file is
absent.

Steps: (1) train a byte-level BPE tokenizer (tokenizers library) on the training documents;
(2) train a ~7M-parameter Llama-style model (``bench.lm_speed`` preset ``small``) on random
128-token windows of the token stream for the time budget, AdamW with warm-up and a cosine decay
over wall-clock time; (3) greedy and sampled continuations of fixed prompts; (4) prefill/decode
tokens/s of the trained model. Writes ``bench/out/lm_small.json`` and ``bench/out/lm_small.png``
(loss curves) atomically, and the model + tokenizer as a Hugging Face directory in
``bench/out/lm_small_model/``. Prints a Markdown summary.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.lm_speed import OUT_DIR, PRESETS, environment, measure, write_json

DATA_NAME = "mmlu_pro_texts.jsonl.gz"
PROMPTS = [
    "Question: Which of the following",
    "Let's think step by step.",
    "The answer is",
]
TINY = dict(  # for tests: a few seconds end to end
    vocab_size=300,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    max_position_embeddings=64,
    tie_word_embeddings=True,
)


def data_path(override: str | None) -> Path:
    """``--data``, else ``$FOCAL_DATA_DIR/NAME``, else ``<repo>/../shared/data/NAME``."""
    if override:
        return Path(override)
    env = os.environ.get("FOCAL_DATA_DIR")
    root = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return root / DATA_NAME


def documents(path: Path, *, seed: int, val_fraction: float) -> tuple[list[str], list[str]]:
    """Training and validation documents, split by question (seeded permutation)."""
    import numpy as np

    records = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            records.append(json.loads(line))
    order = np.random.default_rng(seed).permutation(len(records))
    n_val = max(1, int(round(val_fraction * len(records))))
    val_ids = set(order[:n_val].tolist())
    train, val = [], []
    for i, rec in enumerate(records):
        letters = "ABCDEFGHIJ"
        options = "\n".join(f"{letters[k]}. {o}" for k, o in enumerate(rec["options"]))
        docs = [f"Question: {rec['question']}\nOptions:\n{options}"]
        docs += [f"Answer: {c['text']}" for c in rec["candidates"]]
        (val if i in val_ids else train).extend(docs)
    return train, val


def stream(tokenizer: Any, docs: list[str]) -> Any:
    """One token stream: every document followed by the end-of-sequence token."""
    import numpy as np

    backend = tokenizer.backend_tokenizer
    eos = tokenizer.eos_token_id
    out = []
    for enc in backend.encode_batch(docs, add_special_tokens=False):
        out.extend(enc.ids)
        out.append(eos)
    return np.asarray(out, np.int32)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def plot(history: dict[str, list], path: Path, *, title: str) -> None:
    """Loss curves (train per step, validation at checkpoints) to a PNG, atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    steps = [r["step"] for r in history["train"]]
    axes[0].plot(steps, [r["loss"] for r in history["train"]], lw=0.8, alpha=0.6, label="train")
    axes[0].plot(
        [r["step"] for r in history["val"]],
        [r["loss"] for r in history["val"]],
        "o-",
        label="validation",
    )
    axes[0].set_xlabel("step")
    axes[0].set_ylabel("loss (nats / token)")
    axes[0].legend()
    axes[1].plot(
        [r["time_s"] / 60 for r in history["val"]],
        [r["loss"] for r in history["val"]],
        "o-",
        color="C1",
    )
    axes[1].set_xlabel("wall-clock minutes")
    axes[1].set_ylabel("validation loss")
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lm_small",
        description="Train a small Llama-style decoder (fusers.lm) on the MMLU-Pro answer texts.",
        epilog="example: python -m bench.lm_small --minutes 5 --seed 0",
    )
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    parser.add_argument("--max-steps", type=int, default=None, help="stop after this many steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", default=None, help=f"path of {DATA_NAME}")
    parser.add_argument("--out", type=Path, default=OUT_DIR, help="output directory")
    parser.add_argument("--vocab", type=int, default=4096, help="tokenizer vocabulary size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--tiny", action="store_true", help="a very small model (for tests)")
    parser.add_argument("--skip-speed", action="store_true", help="skip the throughput figures")
    args = parser.parse_args(argv)

    path = data_path(args.data)
    if not path.is_file():
        print(f"lm_small: skipping: data file {path} is absent (set FOCAL_DATA_DIR or --data)")
        return 0

    import jax
    import jax.numpy as jnp
    import numpy as np
    import optax
    from flax import nnx

    from fusers import lm

    t_start = time.perf_counter()
    train_docs, val_docs = documents(path, seed=args.seed, val_fraction=0.05)
    if args.tiny:
        train_docs, val_docs = train_docs[:400], val_docs[:40]
    vocab = TINY["vocab_size"] if args.tiny else args.vocab
    tok = lm.train_tokenizer(train_docs, vocab_size=vocab)
    t_tok = time.perf_counter() - t_start
    train_tokens, val_tokens = stream(tok, train_docs), stream(tok, val_docs)
    chars = sum(len(d) for d in train_docs)

    shape = dict(TINY if args.tiny else PRESETS["small"])
    shape.update(
        vocab_size=len(tok),
        bos_token_id=tok.bos_token_id,
        eos_token_ids=(tok.eos_token_id,),
        pad_token_id=tok.pad_token_id,
    )
    cfg = lm.DecoderConfig(**shape)
    model = lm.CausalLM(cfg, rngs=nnx.Rngs(args.seed))
    warmup = 5 if args.tiny else 30
    tx = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.inject_hyperparams(optax.adamw)(learning_rate=0.0, weight_decay=0.01, b2=0.98),
    )
    opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
    lr_var = opt.opt_state[1].hyperparams["learning_rate"]
    seq_len = min(args.seq_len, cfg.max_position_embeddings)
    batches = lm.pack_batches(
        train_tokens, batch_size=args.batch, seq_len=seq_len + 1, seed=args.seed
    )
    val_gen = lm.pack_batches(
        val_tokens, batch_size=args.batch, seq_len=seq_len + 1, seed=args.seed + 1
    )
    val_batches = [next(val_gen) for _ in range(2 if args.tiny else 8)]

    def val_loss() -> float:
        model.eval()
        loss = float(np.mean([float(lm.eval_loss(model, b)) for b in val_batches]))
        model.train()
        return loss

    budget = 60.0 * args.minutes
    history: dict[str, list] = {"train": [], "val": []}
    t0 = time.perf_counter()
    history["val"].append({"step": 0, "time_s": 0.0, "loss": val_loss()})
    step, next_eval = 0, budget / 10
    model.train()
    while True:
        elapsed = time.perf_counter() - t0
        if elapsed >= budget or (args.max_steps is not None and step >= args.max_steps):
            break
        frac = min(elapsed / budget, 1.0)
        lr = (
            args.lr
            * min(1.0, (step + 1) / warmup)
            * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * frac)))
        )
        lr_var[...] = jnp.asarray(lr, jnp.float32)
        loss = float(lm.train_step(model, opt, next(batches)))
        step += 1
        history["train"].append(
            {"step": step, "time_s": time.perf_counter() - t0, "loss": loss, "lr": lr}
        )
        if time.perf_counter() - t0 >= next_eval:
            history["val"].append(
                {"step": step, "time_s": time.perf_counter() - t0, "loss": val_loss()}
            )
            next_eval += budget / 10
    train_s = time.perf_counter() - t0
    if history["val"][-1]["step"] != step:
        history["val"].append({"step": step, "time_s": train_s, "loss": val_loss()})
    model.eval()

    # All prompts in one left-padded batch: one compilation per decoding mode.
    n_new = 8 if args.tiny else 48
    prompts = [[tok.bos_token_id] + tok(p, add_special_tokens=False)["input_ids"] for p in PROMPTS]
    ids, mask = lm.pad_batch(prompts, pad_token_id=tok.pad_token_id)
    greedy = lm.generate(model, ids, attention_mask=mask, max_new_tokens=n_new)
    sampled = lm.generate(model, ids, attention_mask=mask, max_new_tokens=n_new,
                          key=jax.random.key(args.seed), temperature=0.8, top_p=0.95)  # fmt: skip
    samples = [
        {
            "prompt": prompt,
            "greedy": tok.decode(g, skip_special_tokens=True),
            "sampled": tok.decode(r, skip_special_tokens=True),
        }
        for prompt, g, r in zip(PROMPTS, greedy.to_lists(), sampled.to_lists(), strict=True)
    ]

    speed = speed_b1 = None
    if not args.skip_speed:
        speed = measure(model, batch=8, prompt=128, new_tokens=64, repeats=3, seed=args.seed)
        speed_b1 = measure(model, batch=1, prompt=128, new_tokens=64, repeats=3, seed=args.seed)

    args.out.mkdir(parents=True, exist_ok=True)
    model_dir = lm.save_pretrained(model, args.out / "lm_small_model", tokenizer=tok)
    tokens_seen = step * args.batch * seq_len
    doc = {
        "schema_version": 1,
        "seed": args.seed,
        "data": {
            "path": str(path),
            "sha256": sha256(path),
            "train_documents": len(train_docs),
            "val_documents": len(val_docs),
            "train_chars": chars,
            "train_tokens": int(train_tokens.size),
            "val_tokens": int(val_tokens.size),
        },
        "tokenizer": {
            "kind": "byte-level BPE (tokenizers)",
            "vocab_size": len(tok),
            "chars_per_token": chars / max(int(train_tokens.size), 1),
            "train_s": t_tok,
        },
        "model": {
            "config": {k: v for k, v in shape.items()},
            "parameters": cfg.num_parameters(),
            "dtype": "float32",
        },
        "training": {
            "budget_s": budget,
            "train_s": train_s,
            "steps": step,
            "batch": args.batch,
            "seq_len": seq_len,
            "tokens_seen": tokens_seen,
            "tokens_per_s": tokens_seen / train_s if train_s else None,
            "peak_lr": args.lr,
            "warmup_steps": warmup,
            "schedule": "linear warm-up, cosine over wall-clock to 0.1x",
            "optimizer": "AdamW (b2 0.98, weight decay 0.01), clip 1.0",
        },
        "history": history,
        "final": {
            "train_loss_last50": float(np.mean([r["loss"] for r in history["train"][-50:]]))
            if history["train"]
            else None,
            "val_loss": history["val"][-1]["loss"],
            "val_perplexity": math.exp(history["val"][-1]["loss"]),
        },
        "samples": samples,
        "speed": {"batch8": speed, "batch1": speed_b1},
        "model_dir": str(model_dir),
        "environment": environment(),
    }
    doc["environment"]["argv"] = sys.argv[1:] if argv is None else list(argv)
    write_json(args.out / "lm_small.json", doc)
    plot(
        history,
        args.out / "lm_small.png",
        title=f"{cfg.num_parameters() / 1e6:.1f}M-parameter decoder, {step} steps, "
        f"{train_s / 60:.1f} min on {doc['environment']['device']}",
    )

    print(f"## Small decoder trained from scratch ({cfg.num_parameters():,} parameters)\n")
    print("| quantity | value |\n|---|---|")
    print(
        f"| tokenizer | byte-level BPE, {len(tok):,} tokens, trained in {t_tok:.1f} s, "
        f"{doc['tokenizer']['chars_per_token']:.2f} chars/token |"
    )
    print(
        f"| data | {len(train_docs):,} train / {len(val_docs):,} val documents, "
        f"{train_tokens.size:,} / {val_tokens.size:,} tokens |"
    )
    print(
        f"| training | {step} steps x {args.batch} x {seq_len} tokens in {train_s:.0f} s "
        f"({doc['training']['tokens_per_s']:,.0f} tokens/s) |"
    )
    v0, v1 = history["val"][0]["loss"], history["val"][-1]["loss"]
    print(f"| validation loss | {v0:.3f} at start -> {v1:.3f} (perplexity {math.exp(v1):.1f}) |")
    for sp in (speed, speed_b1):
        if sp:
            print(
                f"| prefill / decode, batch {sp['batch']} x {sp['prompt_tokens']} prompt | "
                f"{sp['prefill_tokens_per_s']:,.0f} / "
                f"{sp['decode_tokens_per_s']:,.0f} tokens/s |"
            )
    print("\nSamples (greedy | sampled, T=0.8, top-p 0.95):\n")
    for s in samples:
        print(f"- `{s['prompt']}` → greedy: {s['greedy']!r}\n  sampled: {s['sampled']!r}")
    print(f"\nwrote {args.out / 'lm_small.json'}, {args.out / 'lm_small.png'}, {model_dir}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
