"""Prefill and decode throughput of the Flax decoder (fusers.lm), with model FLOPs utilisation.

Run from the repository root::

    python -m bench.lm_speed                      # 'small' on CPU, '1b' when a GPU is present
    python -m bench.lm_speed --preset 1b --dtype bfloat16 --batch 16 --prompt 512 --new 128
    python -m bench.lm_speed --peak-tflops 989    # MFU against a peak you supply

Random weights (speed does not depend on them). Prefill = one jitted forward over
``batch x prompt`` tokens; decode = the cached ``generate`` loop, timed as
``t(prompt + new tokens) - t(prompt + 1 token)``. MFU = model FLOPs per second (2 per
multiply-add of every projection, the output head and the two attention products over the real
context) divided by the device's peak dense FLOP/s for the dtype; it is reported only when the
peak is known (table below, or ``--peak-tflops``). Writes ``bench/out/lm_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "out"

PRESETS: dict[str, dict[str, Any]] = {
    # the model trained by bench.lm_small (about 7M parameters with a 4,096-token vocabulary)
    "small": dict(
        vocab_size=4096,
        hidden_size=256,
        intermediate_size=704,
        num_hidden_layers=8,
        num_attention_heads=8,
        num_key_value_heads=4,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        rope_theta=10000.0,
    ),
    # Llama shape of about 1.1B parameters (TinyLlama-1.1B's configuration)
    "1b": dict(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=False,
        rope_theta=10000.0,
    ),
    # for tests
    "tiny": dict(
        vocab_size=256,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=128,
    ),
}

# Peak dense tensor FLOP/s (no sparsity) by device-kind substring and dtype.
PEAK_FLOPS: dict[str, dict[str, float]] = {
    "H200": {"bfloat16": 989e12, "float32": 67e12},
    "H100": {"bfloat16": 989e12, "float32": 67e12},  # SXM; PCIe is lower (756e12)
    "A100": {"bfloat16": 312e12, "float32": 19.5e12},
    "L4": {"bfloat16": 121e12, "float32": 30e12},
    "TPU v5e": {"bfloat16": 197e12},
    "TPU v4": {"bfloat16": 275e12},
}


def peak_flops(device: Any, dtype: str) -> float | None:
    """Peak FLOP/s of ``device`` for ``dtype`` from :data:`PEAK_FLOPS`, or ``None`` if unknown."""
    kind = getattr(device, "device_kind", "")
    for name, table in PEAK_FLOPS.items():
        if name.lower() in kind.lower():
            return table.get(dtype)
    return None


def _block(x: Any) -> Any:
    import jax

    return jax.block_until_ready(x)


def measure(
    model: Any,
    *,
    batch: int,
    prompt: int,
    new_tokens: int,
    repeats: int = 3,
    peak: float | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Time prefill and cached decoding of ``model``; return tokens/s, FLOP/s and MFU.

    Args:
        model: a :class:`fusers.lm.CausalLM`.
        batch: rows.
        prompt: prompt tokens per row.
        new_tokens: generated tokens per row (at least 2).
        repeats: timed runs after one warm-up; the median is kept.
        peak: device peak FLOP/s for MFU (``None``: MFU not reported).
        seed: seed of the random prompt ids.

    Returns:
        A JSON-ready dictionary.
    """
    import jax.numpy as jnp
    import numpy as np
    from flax import nnx

    from fusers import lm

    cfg = model.config
    ids = jnp.asarray(
        np.random.default_rng(seed).integers(3, cfg.vocab_size, size=(batch, prompt)), jnp.int32
    )
    forward = nnx.jit(lambda m, x: m(x)[:, -1])

    def timed(fn) -> tuple[float, float]:
        t0 = time.perf_counter()
        _block(fn())
        first = time.perf_counter() - t0
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _block(fn())
            times.append(time.perf_counter() - t0)
        return float(np.median(times)), first

    prefill_s, prefill_first = timed(lambda: forward(model, ids))

    def gen(n):
        return lambda: lm.generate(model, ids, max_new_tokens=n, stop_tokens=()).tokens

    one_s, _ = timed(gen(1))
    full_s, full_first = timed(gen(new_tokens))
    decode_s = full_s - one_s
    if decode_s <= 0:  # below timer resolution (tiny models): fall back to the whole loop
        decode_s = full_s
    prefill_flops = batch * sum(cfg.flops_per_token(context=t + 1) for t in range(prompt))
    decode_flops = batch * sum(
        cfg.flops_per_token(context=prompt + t + 1) for t in range(1, new_tokens)
    )
    out: dict[str, Any] = {
        "batch": batch,
        "prompt_tokens": prompt,
        "new_tokens": new_tokens,
        "prefill_s": prefill_s,
        "prefill_tokens_per_s": batch * prompt / prefill_s,
        "prefill_tflops_per_s": prefill_flops / prefill_s / 1e12,
        "decode_s": decode_s,
        "decode_tokens_per_s": batch * (new_tokens - 1) / decode_s,
        "decode_ms_per_step": 1e3 * decode_s / (new_tokens - 1),
        "decode_tflops_per_s": decode_flops / decode_s / 1e12,
        "first_call_s": {"prefill": prefill_first, "generate": full_first},
        "peak_tflops_per_s": None if peak is None else peak / 1e12,
        "prefill_mfu": None,
        "decode_mfu": None,
    }
    if peak:
        out["prefill_mfu"] = prefill_flops / prefill_s / peak
        out["decode_mfu"] = decode_flops / decode_s / peak
    return out


def environment() -> dict[str, Any]:
    """Versions and device, for the JSON record."""
    import flax
    import jax

    dev = jax.devices()[0]
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "jax": jax.__version__,
        "flax": flax.__version__,
        "backend": jax.default_backend(),
        "device": getattr(dev, "device_kind", str(dev)),
        "n_devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
    }


def write_json(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` atomically (temporary file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.lm_speed",
        description="Prefill/decode throughput and MFU of a random-weight fusers.lm decoder.",
        epilog="example: python -m bench.lm_speed --preset small --batch 8 --prompt 128 --new 64",
    )
    parser.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default=None,
        help="model shape (default: 1b on a GPU, small otherwise)",
    )
    parser.add_argument(
        "--dtype",
        choices=["float32", "bfloat16"],
        default=None,
        help="parameter and compute dtype (default: bfloat16 on GPU)",
    )
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=128)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="device peak dense TFLOP/s for MFU (default: from the table)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT_DIR / "lm_speed.json")
    args = parser.parse_args(argv)

    import jax
    import jax.numpy as jnp
    from flax import nnx

    from fusers import lm

    gpu = jax.default_backend() == "gpu"
    preset = args.preset or ("1b" if gpu else "small")
    dtype = args.dtype or ("bfloat16" if gpu else "float32")
    cfg = lm.DecoderConfig(**PRESETS[preset])
    jdtype = jnp.dtype(dtype)
    t0 = time.perf_counter()
    model = nnx.jit(
        lambda: lm.CausalLM(cfg, dtype=jdtype, param_dtype=jdtype, rngs=nnx.Rngs(args.seed))
    )()
    init_s = time.perf_counter() - t0
    peak = args.peak_tflops * 1e12 if args.peak_tflops else peak_flops(jax.devices()[0], dtype)
    result = measure(
        model,
        batch=args.batch,
        prompt=args.prompt,
        new_tokens=args.new,
        repeats=args.repeats,
        peak=peak,
        seed=args.seed,
    )
    doc = {
        "schema_version": 1,
        "preset": preset,
        "dtype": dtype,
        "parameters": cfg.num_parameters(),
        "config": PRESETS[preset],
        "init_s": init_s,
        "seed": args.seed,
        "environment": environment(),
        "result": result,
    }
    write_json(args.out, doc)
    mfu = result["prefill_mfu"]
    print(
        "| preset | params | dtype | device | batch x prompt | prefill tok/s | decode tok/s "
        "| decode ms/step | prefill MFU | decode MFU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    fmt = lambda v: "n/a (peak unknown)" if v is None else f"{100 * v:.1f} %"  # noqa: E731
    print(
        f"| {preset} | {cfg.num_parameters() / 1e6:.1f}M | {dtype} | "
        f"{doc['environment']['device']} | {args.batch} x {args.prompt} | "
        f"{result['prefill_tokens_per_s']:,.0f} | {result['decode_tokens_per_s']:,.0f} | "
        f"{result['decode_ms_per_step']:.1f} | {fmt(mfu)} | {fmt(result['decode_mfu'])} |"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
