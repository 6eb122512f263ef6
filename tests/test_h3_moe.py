"""H3Fusion on tiny random decoders: the mixture, its flags, losses and labels, exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from ensembles.util import InputError
from fusers import h3, lm

CFG = lm.DecoderConfig(
    vocab_size=48, hidden_size=16, intermediate_size=40, num_hidden_layers=2,
    num_attention_heads=4, num_key_value_heads=2,
)  # fmt: skip
IDS = jnp.asarray(np.random.default_rng(0).integers(0, 48, (2, 7)), jnp.int32)


def base(seed: int = 0) -> lm.CausalLM:
    return lm.CausalLM(CFG, rngs=nnx.Rngs(seed))


def random_expert(seed: int, *, alpha: float = 4.0, rank: int = 8) -> lm.CausalLM:
    """The base with FFN LoRA whose B is random (a trained-looking adapter)."""
    m = lm.apply_lora(base(), targets=h3.PROJECTIONS, rank=rank, alpha=alpha,
                      rngs=nnx.Rngs(100 + seed))  # fmt: skip
    rng = np.random.default_rng(seed)
    for mod in lm.lora_modules(m).values():
        mod.lora_b[...] = jnp.asarray(rng.normal(0, 0.3, mod.lora_b[...].shape), jnp.float32)
    return m


def experts(n: int = 3, **kw) -> list[h3.Adapter]:
    return [h3.Adapter.from_model(random_expert(k, **kw), name=f"e{k}") for k in range(n)]


def randomise_router(moe, seed: int) -> None:
    rng = np.random.default_rng(seed)
    for block in h3.moe_blocks(moe):
        block.router[...] = jnp.asarray(rng.normal(0, 1.0, block.router[...].shape), jnp.float32)
        block.router_bias[...] = jnp.asarray(rng.normal(0, 1.0, (block.num_experts,)), jnp.float32)


# ------------------------------------------------------------------ the mixture's function
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_experts_equal_to_base_give_the_base_for_any_router(seed):
    zero = h3.Adapter(
        {k: (a, np.zeros_like(b)) for k, (a, b) in experts(1)[0].factors.items()}, 0.5
    )
    moe = h3.build_moe(base(), [zero] * 3, seed=seed)
    randomise_router(moe, seed)
    np.testing.assert_allclose(moe(IDS), base()(IDS), rtol=0, atol=2e-5)


@pytest.mark.parametrize("delta_scale", ["alpha_over_r", "none"])
def test_identical_experts_equal_the_merged_expert_for_any_router(delta_scale):
    e = experts(1)[0]
    moe = h3.build_moe(base(), [e] * 3, flags=h3.H3Flags(delta_scale=delta_scale))
    randomise_router(moe, 3)
    ref = random_expert(0, alpha=4.0 if delta_scale == "alpha_over_r" else 8.0)
    np.testing.assert_allclose(moe(IDS), lm.merge_lora(ref)(IDS), rtol=0, atol=5e-5)


@pytest.mark.parametrize("top_k", [1, 2, 3])
@pytest.mark.parametrize("k", [0, 1, 2])
def test_routing_forced_to_expert_k_gives_merged_expert_k(k, top_k):
    moe = h3.build_moe(base(), experts(), flags=h3.H3Flags(top_k=top_k))
    randomise_router(moe, 5)
    for block in h3.moe_blocks(moe):
        block.router[...] = jnp.zeros_like(block.router[...])
        block.router_bias[...] = jnp.zeros((3,)).at[k].set(1e4)
    merged = lm.merge_lora(random_expert(k))
    np.testing.assert_allclose(moe(IDS), merged(IDS), rtol=0, atol=5e-5)
    other = lm.merge_lora(random_expert((k + 1) % 3))
    assert float(jnp.max(jnp.abs(moe(IDS) - other(IDS)))) > 1e-2  # the test can fail


def test_faithful_delta_scale_adds_the_unscaled_delta():
    """alpha / r = 0.5 ignored: the expert is the model trained with alpha = r."""
    moe = h3.build_moe(base(), experts(), flags=h3.H3Flags(delta_scale="none", top_k=1))
    for block in h3.moe_blocks(moe):
        block.router_bias[...] = jnp.asarray([0.0, 1e4, 0.0])
    doubled = lm.merge_lora(random_expert(1, alpha=8.0))
    np.testing.assert_allclose(moe(IDS), doubled(IDS), rtol=0, atol=5e-5)


def _reference_block(block: h3.MoEFFN, x: np.ndarray) -> np.ndarray:
    """The block from its definition, in float64: dense experts, top-k renormalised."""
    kernels = {p: np.asarray(w, np.float64) for p, w in block.expert_kernels().items()}
    router = np.asarray(block.router[...], np.float64)
    bias = np.asarray(block.router_bias[...], np.float64)
    out = np.zeros(x.shape[:-1] + (kernels["down_proj"].shape[-1],))
    for idx in np.ndindex(*x.shape[:-1]):
        v = x[idx].astype(np.float64)
        logits = v @ router + bias
        p = np.exp(logits - logits.max())
        p /= p.sum()
        keep = np.argsort(-p, kind="stable")[: block.top_k]
        w = np.zeros_like(p)
        w[keep] = p[keep] / p[keep].sum()
        for e in range(block.num_experts):
            g = v @ kernels["gate_proj"][e]
            u = v @ kernels["up_proj"][e]
            h = g / (1 + np.exp(-g)) * u
            out[idx] += w[e] * (h @ kernels["down_proj"][e])
    return out


@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_block_matches_a_float64_reference_with_alignment_lora(top_k):
    moe = h3.build_moe(base(), experts(), flags=h3.H3Flags(top_k=top_k))
    randomise_router(moe, 7)
    h3.add_alignment_lora(moe, seed=1)
    rng = np.random.default_rng(8)
    block = h3.moe_blocks(moe)[1]
    for p in h3.PROJECTIONS:
        var = getattr(block, f"{p}_lora_b")
        var[...] = jnp.asarray(rng.normal(0, 0.2, var[...].shape), jnp.float32)
    moe.eval()
    x = rng.normal(0, 1, (2, 5, CFG.hidden_size)).astype(np.float32)
    got = np.asarray(block(jnp.asarray(x)), np.float64)
    np.testing.assert_allclose(got, _reference_block(block, x), rtol=1e-4, atol=1e-4)


def test_alignment_lora_with_b_zero_is_the_identity():
    moe = h3.build_moe(base(), experts())
    randomise_router(moe, 2)
    before = moe(IDS)
    h3.add_alignment_lora(moe, seed=3)
    moe.eval()
    np.testing.assert_array_equal(moe(IDS), before)
    block = h3.moe_blocks(moe)[0]
    block.up_proj_lora_b[...] = block.up_proj_lora_b[...] + 0.1
    assert float(jnp.max(jnp.abs(moe(IDS) - before))) > 1e-4


def test_top_k_is_honoured_and_ignored_by_the_faithful_flag():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(2, 6, CFG.hidden_size)), jnp.float32)
    for flags, kept in [
        (h3.H3Flags(top_k=1), 1),
        (h3.H3Flags(top_k=3), 3),
        (h3.H3Flags.faithful(top_k=1), 2),
        (h3.H3Flags.faithful(top_k=3), 2),
    ]:
        moe = h3.build_moe(base(), experts(), flags=flags)
        randomise_router(moe, 4)
        _, w = h3.moe_blocks(moe)[0].routing(x)
        assert (np.count_nonzero(np.asarray(w), axis=-1) == kept).all()
        np.testing.assert_allclose(np.asarray(w).sum(-1), 1.0, atol=1e-6)


def test_shared_weights_come_from_the_shared_model_and_ffn_from_the_base():
    other = base(seed=9)
    moe = h3.build_moe(base(), experts(), shared=other)
    np.testing.assert_array_equal(
        moe.model.layers[0].self_attn.q_proj.kernel[...],
        other.model.layers[0].self_attn.q_proj.kernel[...],
    )
    np.testing.assert_array_equal(
        moe.model.embed_tokens.embedding[...], other.model.embed_tokens.embedding[...]
    )
    np.testing.assert_array_equal(
        h3.moe_blocks(moe)[0].gate_proj.kernel[...],
        base().model.layers[0].mlp.gate_proj.kernel[...],
    )


def test_adapter_round_trip_through_peft_files(tmp_path):
    m = random_expert(2)
    lm.save_adapters(m, tmp_path / "a")
    a, b = h3.read_adapter(tmp_path / "a"), h3.Adapter.from_model(m)
    assert a.scaling == b.scaling == 0.5 and sorted(a.factors) == sorted(b.factors)
    for key in a.factors:
        np.testing.assert_array_equal(a.factors[key][1], b.factors[key][1])


def test_bad_inputs_are_one_line_errors(tmp_path):
    with pytest.raises(InputError, match="need at least one expert"):
        h3.build_moe(base(), [])
    with pytest.raises(InputError, match="same rank"):
        h3.build_moe(base(), [experts(1)[0], experts(1, rank=4)[0]])
    with pytest.raises(InputError, match="gate_loss"):
        h3.H3Flags(gate_loss="bce")
    with pytest.raises(InputError, match="missing"):
        h3.read_adapter(tmp_path)


# ------------------------------------------------------------------ losses
def _np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**6), st.integers(1, 3), st.integers(1, 4), st.integers(2, 6))
def test_gate_losses_equal_their_numpy_formulas(seed, layers, batch, length):
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (layers, batch, length, 3))
    y = rng.integers(0, 3, batch)
    mask = (rng.random((batch, length)) < 0.7).astype(np.float64)
    mask[:, 0] = 1
    p = _np_softmax(logits)
    pbar_masked = ((p * mask[None, :, :, None]).sum(2) / mask.sum(1)[None, :, None]).mean(0)
    nll = -np.mean(np.log(pbar_masked[np.arange(batch), y]))
    pbar_all = p.mean(2).mean(0)
    ce = -np.mean(np.log(_np_softmax(pbar_all)[np.arange(batch), y]))
    got_nll = h3.gate_loss(jnp.asarray(logits), jnp.asarray(y), attention_mask=jnp.asarray(mask))
    got_ce = h3.gate_loss(jnp.asarray(logits), jnp.asarray(y), attention_mask=jnp.asarray(mask),
                          kind="ce_on_probs")  # fmt: skip
    assert float(got_nll) == pytest.approx(nll, rel=1e-5)
    assert float(got_ce) == pytest.approx(ce, rel=1e-5)
    assert np.log(1 + 2 / np.e) - 1e-6 <= float(got_ce) <= np.log(2 + np.e) + 1e-6


@pytest.mark.parametrize("kind", ["nll", "ce_on_probs"])
def test_gate_loss_gradient_moves_the_mean_routing_towards_the_label(kind):
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(0, 1, (2, 3, 5, 3)), jnp.float32)
    y = jnp.asarray([0, 2, 1])
    grad = jax.grad(lambda z: h3.gate_loss(z, y, kind=kind))(logits)
    before = h3.mean_routing(logits)[jnp.arange(3), y]
    after = h3.mean_routing(logits - 0.5 * grad)[jnp.arange(3), y]
    assert bool(jnp.all(after > before))


def _aligned_moe(seed: int = 0):
    moe = h3.build_moe(base(), experts())
    randomise_router(moe, seed)
    h3.add_alignment_lora(moe, seed=seed)
    rng = np.random.default_rng(seed)
    for block in h3.moe_blocks(moe):
        for p in h3.PROJECTIONS:
            var = getattr(block, f"{p}_lora_b")
            var[...] = jnp.asarray(rng.normal(0, 0.2, var[...].shape), jnp.float32)
    return moe


def test_regularisers_equal_their_numpy_formulas():
    moe = _aligned_moe()
    gam = (0.3, 0.0, 2.0)
    delta = np.zeros(3)
    norms = np.zeros(3)
    for block in h3.moe_blocks(moe):
        s = block.lora_scaling
        for p in h3.PROJECTIONS:
            a = np.asarray(getattr(block, f"{p}_lora_a")[...], np.float64)
            b = np.asarray(getattr(block, f"{p}_lora_b")[...], np.float64)
            w = np.asarray(getattr(block, p).kernel[...], np.float64)
            a1 = np.asarray(getattr(block, f"{p}_a")[...], np.float64)
            b1 = np.asarray(getattr(block, f"{p}_b")[...], np.float64)
            for e in range(3):
                delta[e] += np.sum((s * a[e] @ b[e]) ** 2)
                merged = w + block.scale * a1[e] @ b1[e]
                norms[e] += np.linalg.norm(merged) + np.linalg.norm(a[e]) + np.linalg.norm(b[e])
    layers = CFG.num_hidden_layers
    got = float(h3.drift_regularizer(moe, gam))
    assert got == pytest.approx(float(np.dot(gam, delta) / layers), rel=1e-5)
    got = float(h3.drift_regularizer(moe, gam, kind="param_norm"))
    assert got == pytest.approx(float(np.dot(gam, norms) / layers), rel=1e-5)


def test_delta_regulariser_is_zero_at_b_zero_and_gradients_skip_frozen_tensors():
    moe = h3.build_moe(base(), experts())
    h3.add_alignment_lora(moe, seed=0)
    assert float(h3.drift_regularizer(moe, (1.0, 1.0, 1.0))) == 0.0
    moe = _aligned_moe()
    everything = nnx.Any(nnx.Param, h3.ExpertDelta)
    for kind in ("delta", "param_norm"):
        graphdef, state, rest = nnx.split(moe, everything, ...)

        def f(s, kind=kind, graphdef=graphdef, rest=rest):
            return h3.drift_regularizer(nnx.merge(graphdef, s, rest), (1.0, 0.5, 2.0), kind=kind)

        grads = nnx.to_flat_state(jax.grad(f)(state))
        for path, g in grads:
            name = ".".join(map(str, path))
            is_lora = "_lora_a" in name or "_lora_b" in name
            if not is_lora:
                assert not np.any(np.asarray(g[...])), name
        assert any(np.any(np.asarray(g[...])) for p, g in grads if "_lora_b" in str(p[-1]))


@pytest.mark.parametrize("faithful", [False, True])
def test_align_step_changes_only_trainable_tensors(faithful):
    flags = h3.H3Flags.faithful() if faithful else h3.H3Flags()
    moe = _aligned_moe()
    before = {
        ".".join(map(str, p)): np.asarray(v[...]).copy()
        for p, v in nnx.to_flat_state(nnx.state(moe, nnx.Any(nnx.Param, h3.ExpertDelta)))
    }
    rng = np.random.default_rng(1)
    seqs = [list(rng.integers(1, 48, 6)) for _ in range(3)]
    enc = [(s, [0, 0, 1, 1, 1, 1]) for s in seqs]
    h3.align_moe(moe, enc, [0, 1, 2], steps=2, flags=flags, gammas=(0.1, 0.1, 0.1),
                 batch_size=3, length_bucket=4, learning_rate=1e-2)  # fmt: skip
    after = {
        ".".join(map(str, p)): np.asarray(v[...])
        for p, v in nnx.to_flat_state(nnx.state(moe, nnx.Any(nnx.Param, h3.ExpertDelta)))
    }
    for name, value in before.items():
        trainable = "lora" in name or (name.endswith("router") and not faithful)
        changed = not np.array_equal(value, after[name])
        if trainable and "lora_a" not in name:
            assert changed, name
        if not trainable:
            assert not changed, name


def test_resumed_alignment_equals_the_uninterrupted_run(tmp_path):
    rng = np.random.default_rng(2)
    enc = [(list(rng.integers(1, 48, 6)), [0, 0, 1, 1, 1, 1]) for _ in range(6)]
    labels = [0, 0, 1, 1, 2, 2]
    kw = dict(batch_size=2, length_bucket=4, learning_rate=1e-2, seed=3)
    full = _aligned_moe()
    h_full = h3.align_moe(full, enc, labels, steps=4, **kw)
    part = _aligned_moe()
    h3.align_moe(part, enc, labels, steps=4, checkpoint_dir=tmp_path / "c",
                 checkpoint_every=2, callback=lambda step, _: step == 1, **kw)  # fmt: skip
    resumed = _aligned_moe()
    h_res = h3.align_moe(resumed, enc, labels, steps=4, checkpoint_dir=tmp_path / "c",
                         checkpoint_every=2, **kw)  # fmt: skip
    assert [h["loss"] for h in h_res] == pytest.approx([h["loss"] for h in h_full], rel=1e-6)
    np.testing.assert_allclose(resumed(IDS), full(IDS), atol=1e-6)


# ------------------------------------------------------------------ task labels
def _reference_cumulative(sizes):
    """The reference's loop, written out: append ``k`` once per row of the running total."""
    labels, total = [], 0
    for k, n in enumerate(sizes):
        total += n
        labels += [k] * total
    return np.asarray(labels[:total])


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=3, max_size=3))
def test_label_builder_class_counts(sizes):
    n0, n1, n2 = sizes
    fixed = h3.task_labels(sizes)
    assert np.bincount(fixed, minlength=3).tolist() == sizes
    bug = h3.task_labels(sizes, kind="cumulative")
    np.testing.assert_array_equal(bug, _reference_cumulative(sizes))
    assert np.bincount(bug, minlength=3).tolist() == [n0, n1 + min(n0, n2), max(0, n2 - n0)]


def test_label_builder_on_the_real_set_sizes():
    # helpfulness 500, safety 2483, TruthfulQA train 1548 answers: expert 2 keeps 1048 rows
    assert np.bincount(h3.task_labels([500, 2483, 1548], kind="cumulative")).tolist() == [
        500, 2983, 1048,
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["delta", "param_norm"])
def test_regulariser_gradient_is_finite_at_fresh_lora(kind):
    """A fresh alignment LoRA has B = 0 exactly: the un-squared norm must not give NaN."""
    moe = h3.build_moe(base(), experts())
    h3.add_alignment_lora(moe, seed=0)
    graphdef, state, rest = nnx.split(moe, lm.LoRAParam, ...)
    grads = jax.grad(
        lambda s: h3.drift_regularizer(nnx.merge(graphdef, s, rest), (1.0, 1.0, 1.0), kind=kind)
    )(state)
    assert all(np.isfinite(np.asarray(g[...])).all() for _, g in nnx.to_flat_state(grads))


def test_faithful_alignment_from_fresh_lora_stays_finite():
    moe = h3.build_moe(base(), experts(), flags=h3.H3Flags.faithful())
    rng = np.random.default_rng(4)
    enc = [(list(rng.integers(1, 48, 6)), [0, 0, 1, 1, 1, 1]) for _ in range(3)]
    hist = h3.align_moe(moe, enc, [0, 1, 2], steps=3, flags=h3.H3Flags.faithful(),
                        gammas=(1e-3,) * 3, batch_size=3, length_bucket=4)  # fmt: skip
    assert all(np.isfinite(h["loss"]) for h in hist)
    assert np.isfinite(np.asarray(moe(IDS))).all()
