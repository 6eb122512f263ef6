"""Gray-code exhaustive scans: identical to the chunked scan, sharded, resumable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import ensembles
import focal
import focal.search
from focal._gray import GRAY_KINDS, GrayPlan
from focal._metrics import metric_spec

GRAY_METRICS = [m for m in focal.METRICS if metric_spec(m).kind in GRAY_KINDS]


def _bundle(n_models: int, n_samples: int, seed: int, *, duplicates: bool = False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n_samples)
    skill = rng.uniform(0.3, 0.9, n_models)
    right = rng.random((n_models, n_samples)) < skill[:, None]
    preds = np.where(right, labels, rng.integers(-1, 3, (n_models, n_samples)))
    if duplicates:  # many exact ties between teams
        preds[1::2] = preds[0::2][: n_models // 2]
        preds[2] = labels  # a member never wrong
    return ensembles.Bundle.create(
        models=[f"m{i}" for i in range(n_models)], labels=labels, preds=preds, n_classes=3
    )


def _summary(result):
    return [(t.members, t.score) for t in result.teams]


@pytest.mark.parametrize("metric", GRAY_METRICS)
def test_gray_equals_chunked_for_every_gray_metric(metric):
    bundle = _bundle(12, 60, seed=1)
    kwargs = dict(metric=metric, sizes=(2, 12), top_k=15)
    gray = focal.search.exhaustive_scan(bundle, scan="gray", **kwargs)
    chunked = focal.search.exhaustive_scan(bundle, scan="chunked", **kwargs)
    assert [t.members for t in gray.teams] == [t.members for t in chunked.teams]
    assert [t.score for t in gray.teams] == [t.score for t in chunked.teams]


@pytest.mark.parametrize("sizes", [(2, 12), (3, 3), (5, 9), "2,11"])
@pytest.mark.parametrize("seed", [0, 1])
def test_gray_equals_chunked_with_ties_and_size_subsets(sizes, seed):
    bundle = _bundle(12, 40, seed=seed, duplicates=True)
    for top_k in (1, 7, 40):
        kwargs = dict(sizes=sizes, top_k=top_k)
        gray = focal.search.exhaustive_scan(bundle, scan="gray", **kwargs)
        chunked = focal.search.exhaustive_scan(bundle, scan="chunked", **kwargs)
        assert _summary(gray) == _summary(chunked)


@pytest.mark.parametrize("block_bits,group_steps", [(1, 1), (3, 8), (6, 64), (11, 1)])
def test_plan_shapes_do_not_change_results(block_bits, group_steps):
    bundle = _bundle(12, 50, seed=3, duplicates=True)
    ref = focal.search.exhaustive_scan(bundle, sizes=(2, 12), top_k=12, scan="chunked")
    import jax

    from focal._gray import gray_groups
    from focal._metrics import prepare_metric
    from focal._scoring import moments_of
    from focal._topk import TopK

    spec = metric_spec("focal")
    plan = GrayPlan(12, block_bits=block_bits, group_steps=group_steps)
    top = TopK(12, spec.sign)
    arrays = prepare_metric(spec, moments_of(bundle))
    with jax.enable_x64(True):
        for _, scores, sizes, ranks in gray_groups(spec, arrays, plan, tuple(range(2, 13)), 12):
            top.add(scores, sizes, ranks)
    np.testing.assert_array_equal(top.scores, [t.score for t in ref.teams])


def test_gray_refuses_metrics_without_integer_statistics():
    bundle = _bundle(12, 30, seed=0)
    with pytest.raises(ValueError, match="Gray"):
        focal.search.exhaustive_scan(bundle, metric="q_statistic", scan="gray")


def test_checkpoint_resume_gives_the_same_top_k(tmp_path):
    bundle = _bundle(20, 80, seed=5)  # 2^20 subsets: 4 groups of 2^18
    kwargs = dict(sizes=(2, 20), top_k=10, scan="gray")
    full = focal.search.exhaustive_scan(bundle, **kwargs)
    ckpt = tmp_path / "scan.ckpt"

    calls = []

    def interrupt_after_two(done, total):
        calls.append(done)
        if len(calls) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        focal.search.exhaustive_scan(
            bundle, checkpoint=ckpt, checkpoint_every=0.0, progress=interrupt_after_two, **kwargs
        )
    assert ckpt.exists()
    with np.load(ckpt) as z:
        assert int(z["next_unit"]) == 2 < GrayPlan(20).n_groups
    resumed = focal.search.exhaustive_scan(bundle, checkpoint=ckpt, **kwargs)
    assert _summary(resumed) == _summary(full)


def test_checkpoint_of_chunked_scan_and_mismatch(tmp_path):
    bundle = _bundle(8, 50, seed=2)
    ckpt = tmp_path / "c.npz"
    kwargs = dict(sizes=(2, 8), top_k=5, scan="chunked", chunk_size=16)
    full = focal.search.exhaustive_scan(bundle, **kwargs)
    calls = []

    def stop(done, total):
        calls.append(done)
        if len(calls) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        focal.search.exhaustive_scan(
            bundle, checkpoint=ckpt, checkpoint_every=0.0, progress=stop, **kwargs
        )
    assert _summary(focal.search.exhaustive_scan(bundle, checkpoint=ckpt, **kwargs)) == _summary(
        full
    )
    with pytest.raises(ValueError, match="another scan"):
        focal.search.exhaustive_scan(bundle, checkpoint=ckpt, **{**kwargs, "top_k": 6})
    ckpt.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="checkpoint: cannot read"):
        focal.search.exhaustive_scan(bundle, checkpoint=ckpt, **kwargs)


_SHARDED = textwrap.dedent(
    """
    import json, sys
    import numpy as np
    import jax, ensembles, focal, focal.search
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 70)
    preds = np.where(rng.random((13, 70)) < 0.6, labels, rng.integers(-1, 3, (13, 70)))
    preds[5] = preds[4]
    b = ensembles.Bundle.create(models=[f"m{i}" for i in range(13)], labels=labels, preds=preds)
    out = {"n_devices": len(jax.devices())}
    for metric in ("focal", "focal_fleiss_kappa"):
        r = focal.search.exhaustive_scan(b, metric=metric, sizes=(2, 13), top_k=20, scan="gray")
        out[metric] = [[list(t.members), t.score] for t in r.teams]
    print(json.dumps(out))
    """
)


def _run_sharded(n_devices: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={n_devices}")
    env["JAX_PLATFORMS"] = "cpu"
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-c", _SHARDED], env=env, cwd=root, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_four_devices_give_identical_results():
    one, four = _run_sharded(1), _run_sharded(4)
    assert one["n_devices"] == 1 and four["n_devices"] == 4
    assert one["focal"] == four["focal"]
    assert one["focal_fleiss_kappa"] == four["focal_fleiss_kappa"]


_MULTIHOST = textwrap.dedent(
    """
    import json, sys
    import jax
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(coordinator_address=sys.argv[1], num_processes=2,
                               process_id=int(sys.argv[2]))
    import numpy as np
    import ensembles, focal, focal.search
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 70)
    preds = np.where(rng.random((13, 70)) < 0.6, labels, rng.integers(-1, 3, (13, 70)))
    preds[5] = preds[4]
    b = ensembles.Bundle.create(models=[f"m{i}" for i in range(13)], labels=labels, preds=preds)
    r = focal.search.exhaustive_scan(b, sizes=(2, 13), top_k=20, scan="gray")
    print(json.dumps({"processes": jax.process_count(), "local": jax.local_device_count(),
                      "focal": [[list(t.members), t.score] for t in r.teams]}))
    """
)


def test_two_processes_give_identical_results():
    import socket

    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    env["JAX_PLATFORMS"] = "cpu"
    root = Path(__file__).resolve().parents[1]
    args = [sys.executable, "-c", _MULTIHOST, f"localhost:{port}"]
    procs = [
        subprocess.Popen(args + [str(i)], env=env, cwd=root, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    outs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            pytest.skip("jax.distributed on CPU did not start in time here")
        if proc.returncode != 0 and "gloo" in err.lower() and "not" in err.lower():
            pytest.skip("this jaxlib has no CPU collectives (gloo)")
        assert proc.returncode == 0, err
        outs.append(json.loads(out.strip().splitlines()[-1]))
    single = _run_sharded(1)
    for out in outs:
        assert out["processes"] == 2 and out["local"] == 2
        assert out["focal"] == single["focal"]
