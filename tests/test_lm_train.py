"""Training toolkit: masked loss, accumulation equals the big batch, precision, checkpoints."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from fusers import lm

CFG = lm.DecoderConfig(
    vocab_size=53,
    hidden_size=32,
    intermediate_size=64,
    num_hidden_layers=1,
    num_attention_heads=4,
    num_key_value_heads=2,
)

SGD = optax.sgd(1.0)  # one object: optimizers built from it share compiled steps


def _batch(seed=0, lengths=(12, 5, 9, 12, 3, 7, 12, 10)):
    rng = np.random.default_rng(seed)
    seqs = [rng.integers(3, 53, size=n).tolist() for n in lengths]
    masks = [[0] * (n // 2) + [1] * (n - n // 2) for n in lengths]  # prompt masked out
    return lm.make_batch(seqs, loss_masks=masks)


def _params(model):
    return jax.tree.map(np.asarray, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


def test_causal_lm_loss_matches_a_direct_computation():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    targets = rng.integers(0, 7, size=(2, 5))
    mask = rng.integers(0, 2, size=(2, 5))
    logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(logp, targets[..., None], -1)[..., 0]
    expected = (nll * mask).sum() / mask.sum()
    got = lm.causal_lm_loss(jnp.asarray(logits), jnp.asarray(targets), mask=jnp.asarray(mask))
    np.testing.assert_allclose(float(got), expected, rtol=1e-6)
    total = lm.causal_lm_loss(jnp.asarray(logits), jnp.asarray(targets), reduction="sum")
    np.testing.assert_allclose(float(total), nll.sum(), rtol=1e-6)
    with pytest.raises(ValueError, match="reduction"):
        lm.causal_lm_loss(jnp.asarray(logits), jnp.asarray(targets), reduction="max")


def test_masked_tokens_do_not_count():
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    batch = _batch()
    base = float(lm.eval_loss(model, batch))
    ids = np.asarray(batch.input_ids).copy()
    ids[np.asarray(batch.attention_mask) == 0] = 7
    changed = lm.LMBatch(jnp.asarray(ids), batch.attention_mask, batch.loss_mask)
    assert float(lm.eval_loss(model, changed)) == pytest.approx(base, abs=1e-6)


def test_a_few_steps_reduce_the_loss():
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    opt = lm.make_optimizer(model, learning_rate=1e-2)
    batch = _batch()
    before = float(lm.eval_loss(model, batch))
    losses = lm.fit(model, opt, iter([batch] * 30), steps=30)
    assert len(losses) == 30
    assert float(lm.eval_loss(model, batch)) < 0.5 * before


@pytest.mark.parametrize("accum", [2, 4])
def test_gradient_accumulation_equals_the_big_batch(accum):
    batch = _batch()  # rows of unequal lengths: token-weighted averaging matters
    results = []
    for steps in (1, accum):
        model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
        # Plain SGD: parameter differences are gradient differences (Adam would magnify the
        # rounding of near-zero gradients).
        opt = nnx.Optimizer(model, SGD, wrt=nnx.Param)
        loss = float(lm.train_step(model, opt, batch, accum_steps=steps))
        loss2 = float(lm.train_step(model, opt, batch, accum_steps=steps))
        results.append((loss, loss2, _params(model)))
    (l1, m1, p1), (l2, m2, p2) = results
    assert l1 == pytest.approx(l2, abs=1e-5) and m1 == pytest.approx(m2, abs=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6, rtol=0), p1, p2)
    with pytest.raises(ValueError, match="does not divide"):
        model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
        lm.train_step(model, lm.make_optimizer(model), batch, accum_steps=3)


def test_training_is_seeded():
    def run():
        model = lm.CausalLM(CFG, rngs=nnx.Rngs(4))  # same shapes: reuses the compiled step
        opt = lm.make_optimizer(model, learning_rate=1e-2)
        tokens = np.random.default_rng(0).integers(3, 53, size=2000)
        lm.fit(model, opt, lm.pack_batches(tokens, batch_size=8, seq_len=12, seed=1), steps=3)
        return _params(model)

    jax.tree.map(np.testing.assert_array_equal, run(), run())


def test_mixed_precision_keeps_float32_master_weights():
    model = lm.set_compute_dtype(lm.CausalLM(CFG, rngs=nnx.Rngs(0)), jnp.bfloat16)
    batch = _batch()
    opt = lm.make_optimizer(model, learning_rate=1e-2)
    losses = [float(lm.train_step(model, opt, batch)) for _ in range(6)]
    assert np.isfinite(losses).all() and losses[-1] < losses[0]
    # the first loss (random init, bfloat16 products) is close to the float32 one
    ref = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    assert losses[0] == pytest.approx(float(lm.eval_loss(ref, batch)), rel=2e-2)
    assert nnx.jit(lambda m, x: m(x))(model, batch.input_ids).dtype == jnp.bfloat16
    dtypes = {x.dtype for x in jax.tree.leaves(nnx.state(model, nnx.Param))}
    assert dtypes == {jnp.dtype(jnp.float32)}


def test_orbax_checkpoint_resumes_exactly(tmp_path):
    def fresh():
        model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
        lm.apply_lora(model, targets=("q_proj",), rank=2, dropout=0.1, rngs=nnx.Rngs(1))
        return model, lm.make_optimizer(model, learning_rate=1e-2)

    batch = _batch()
    model, opt = fresh()
    lm.train_step(model, opt, batch)
    lm.save_checkpoint(tmp_path / "ckpt", model, opt, step=1)
    lm.train_step(model, opt, batch)
    uninterrupted = _params(model)

    model2, opt2 = fresh()
    assert lm.restore_checkpoint(tmp_path / "ckpt", model2, opt2) == 1
    lm.train_step(model2, opt2, batch)
    jax.tree.map(np.testing.assert_array_equal, uninterrupted, _params(model2))
    with pytest.raises(FileNotFoundError):
        lm.restore_checkpoint(tmp_path / "none", model2)


def test_custom_optax_transform_and_schedules():
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    assert np.isfinite(float(lm.train_step(model, opt, _batch())))
    for schedule in ("linear", "cosine", "constant"):
        lm.make_optimizer(model, total_steps=10, schedule=schedule)
    with pytest.raises(ValueError, match="schedule"):
        lm.make_optimizer(model, schedule="step")


def test_make_batch_and_pack_batches():
    b = lm.make_batch([[1, 2, 3], [4]], pad_token_id=9)
    assert b.input_ids.tolist() == [[1, 2, 3], [4, 9, 9]]
    assert b.loss_mask.tolist() == [[1, 1, 1], [1, 0, 0]]
    batches = lm.pack_batches(np.arange(100), batch_size=3, seq_len=8, seed=0)
    first = next(batches)
    assert first.input_ids.shape == (3, 8)
    assert (np.diff(np.asarray(first.input_ids), axis=1) == 1).all()
    with pytest.raises(ValueError, match="longer than seq_len"):
        next(lm.pack_batches(np.arange(5), batch_size=1, seq_len=8, seed=0))


class _Stop(Exception):
    pass


def test_fit_resumes_to_the_uninterrupted_run(tmp_path):
    tokens = np.random.default_rng(0).integers(3, 53, size=2000)

    def run(steps, **kw):
        model = lm.CausalLM(CFG, rngs=nnx.Rngs(4))
        batches = lm.pack_batches(tokens, batch_size=4, seq_len=12, seed=1)
        losses = lm.fit(model, optax.adam(1e-2), batches, steps=steps, **kw)
        return losses, _params(model)

    full_losses, full = run(6)

    def interrupt(step, loss):
        if step == 3:  # after the 4th step, past the checkpoint of step 2
            raise _Stop

    with pytest.raises(_Stop):
        run(6, checkpoint_dir=tmp_path, checkpoint_every=2, callback=interrupt)
    from fusers._checkpoint import CheckpointStore

    assert CheckpointStore(tmp_path).latest() == 4
    losses, resumed = run(6, checkpoint_dir=tmp_path, checkpoint_every=2)
    assert losses == full_losses
    jax.tree.map(np.testing.assert_array_equal, full, resumed)
    assert CheckpointStore(tmp_path).steps() == [4, 6]  # the last two are kept


def test_fit_optimizer_arguments():
    batch = _batch()
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    default = lm.fit(model, None, iter([batch] * 3), steps=3)
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    same = lm.fit(model, lm.make_optimizer(model), iter([batch] * 3), steps=3)
    assert default == same  # None is make_optimizer's default AdamW
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    sgd = lm.fit(model, optax.sgd(0.5), iter([batch] * 3), steps=3)
    assert sgd[0] == default[0] and sgd[1] != default[1]
    with pytest.raises(ValueError, match="optimizer: expected"):
        lm.fit(model, "adam", iter([batch]), steps=1)


def test_damaged_or_mismatched_lm_checkpoint_is_one_line(tmp_path):
    model = lm.CausalLM(CFG, rngs=nnx.Rngs(0))
    lm.save_checkpoint(tmp_path / "c", model, step=3)
    other = lm.CausalLM(CFG.replace(intermediate_size=32), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="the model expects") as info:
        lm.restore_checkpoint(tmp_path / "c", other)
    assert "\n" not in str(info.value)
    for path in (tmp_path / "c" / "3").rglob("*"):
        if path.is_file():
            path.write_bytes(b"junk")
    with pytest.raises(ValueError, match="corrupted") as info:
        lm.restore_checkpoint(tmp_path / "c", model)
    assert str(tmp_path / "c" / "3") in str(info.value) and "\n" not in str(info.value)
