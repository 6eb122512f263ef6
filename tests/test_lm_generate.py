"""Generation: the cached loop equals step-by-step full recomputation; stops, padding, sampling."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from fusers import lm
from fusers.lm import _generate

VOCAB = 97


@functools.cache  # generation never changes the model: share it between tests
def _model(**overrides) -> lm.CausalLM:
    kw = dict(
        vocab_size=VOCAB,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        initializer_range=0.2,
    )
    kw.update(overrides)
    return lm.CausalLM(lm.DecoderConfig(**kw), rngs=nnx.Rngs(0))


PROMPTS = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16]]


def _reference(model, prompts, n, stop=()):
    """Greedy decoding by recomputing the whole (left-padded) sequence at every step."""
    seqs = [list(p) for p in prompts]
    done = [False] * len(prompts)
    tokens = np.zeros((len(prompts), n), np.int32)
    logits = np.zeros((len(prompts), n, VOCAB), np.float32)
    forward = nnx.jit(lambda m, i, a: m(i, attention_mask=a))
    width = max(len(p) for p in prompts) + n  # one shape: one compilation
    for step in range(n):
        ids, mask = lm.pad_batch(seqs, length=width)
        last = np.asarray(forward(model, jnp.asarray(ids), jnp.asarray(mask))[:, -1])
        for r in range(len(prompts)):
            if done[r]:
                continue
            tok = int(np.argmax(last[r]))
            tokens[r, step], logits[r, step] = tok, last[r]
            seqs[r].append(tok)
            done[r] = tok in stop
    return tokens, logits


@pytest.mark.parametrize(
    "overrides",
    [{}, {"sliding_windows": (3, None)}, {"tie_word_embeddings": True, "attention_bias": True}],
    ids=["llama", "window", "tied-bias"],
)
def test_cached_greedy_equals_full_recomputation(overrides):
    model = _model(**overrides)
    ids, mask = lm.pad_batch(PROMPTS)
    out = lm.generate(
        model, ids, attention_mask=mask, max_new_tokens=10, stop_tokens=(), return_logits=True
    )
    ref_tokens, ref_logits = _reference(model, PROMPTS, 10)
    np.testing.assert_array_equal(np.asarray(out.tokens), ref_tokens)
    np.testing.assert_allclose(np.asarray(out.logits), ref_logits, atol=1e-5, rtol=0)
    assert out.lengths.tolist() == [10, 10, 10] and not out.finished.any()


def test_left_padding_does_not_change_a_row():
    model = _model()
    alone = lm.generate(model, [PROMPTS[1]], max_new_tokens=10, stop_tokens=())
    ids, mask = lm.pad_batch(PROMPTS)
    batch = lm.generate(model, ids, attention_mask=mask, max_new_tokens=10, stop_tokens=())
    np.testing.assert_array_equal(np.asarray(batch.tokens[1]), np.asarray(alone.tokens[0]))


def test_stop_tokens_end_each_row_separately():
    model = _model()
    ids, mask = lm.pad_batch(PROMPTS)
    free = np.asarray(
        lm.generate(model, ids, attention_mask=mask, max_new_tokens=10, stop_tokens=()).tokens
    )
    stop = int(free[0, 2])  # row 0 stops at its third token
    out = lm.generate(
        model, ids, attention_mask=mask, max_new_tokens=10, stop_tokens=(stop,), pad_token_id=-1
    )
    ref, _ = _reference(model, PROMPTS, 10, stop=(stop,))
    toks = np.asarray(out.tokens)
    for r in range(3):
        hits = np.flatnonzero(free[r] == stop)
        n = int(hits[0]) + 1 if hits.size else 10
        assert int(out.lengths[r]) == n
        assert bool(out.finished[r]) == bool(hits.size)
        np.testing.assert_array_equal(toks[r, :n], free[r, :n])
        np.testing.assert_array_equal(toks[r, :n], ref[r, :n])
        assert (toks[r, n:] == -1).all()
    assert out.to_lists()[0] == free[0, :3].tolist()


def test_loop_stops_early_when_every_row_is_done():
    model = _model()
    ids, mask = lm.pad_batch(PROMPTS)
    free = lm.generate(model, ids, attention_mask=mask, max_new_tokens=10, stop_tokens=())
    first = np.asarray(free.tokens)[:, 0]
    out = lm.generate(
        model, ids, attention_mask=mask, max_new_tokens=10, stop_tokens=tuple(first.tolist())
    )
    assert out.lengths.tolist() == [1, 1, 1] and out.finished.all()


def test_no_recompilation_per_token_or_per_call():
    model = _model(num_hidden_layers=1)
    ids, mask = lm.pad_batch(PROMPTS)
    before = _generate._TRACES["generate"]
    lm.generate(model, ids, attention_mask=mask, max_new_tokens=16, stop_tokens=())
    assert _generate._TRACES["generate"] == before + 1  # 16 tokens, one trace
    size = _generate._generate._cache_size()
    for shift in (1, 2):  # new prompts, same shapes: no new compilation
        lm.generate(model, ids + shift, attention_mask=mask, max_new_tokens=16, stop_tokens=())
    lm.generate(
        model,
        ids,
        attention_mask=mask,
        max_new_tokens=16,
        stop_tokens=(),
        key=jax.random.key(0),
        temperature=0.5,
    )
    lm.generate(
        model,
        ids,
        attention_mask=mask,
        max_new_tokens=16,
        stop_tokens=(),
        key=jax.random.key(1),
        temperature=0.9,
        top_p=0.8,
    )
    assert _generate._TRACES["generate"] == before + 2  # only greedy -> sampling traced anew
    assert _generate._generate._cache_size() == size + 1


def test_sampling_is_determined_by_the_key():
    model = _model()
    ids, mask = lm.pad_batch(PROMPTS)

    def run(key, **kw):
        return np.asarray(
            lm.generate(
                model, ids, attention_mask=mask, max_new_tokens=10, stop_tokens=(), key=key, **kw
            ).tokens
        )

    a = run(jax.random.key(7), temperature=1.5)
    np.testing.assert_array_equal(a, run(jax.random.key(7), temperature=1.5))
    assert not np.array_equal(a, run(jax.random.key(8), temperature=1.5))
    greedy = np.asarray(
        lm.generate(model, ids, attention_mask=mask, max_new_tokens=10, stop_tokens=()).tokens
    )
    np.testing.assert_array_equal(run(jax.random.key(3), top_k=1), greedy)
    np.testing.assert_array_equal(run(jax.random.key(3), top_p=1e-6), greedy)


def test_filter_logits_top_k_and_top_p():
    logits = jnp.log(jnp.array([[0.5, 0.3, 0.15, 0.05]]))

    def kept(top_k, top_p):
        return np.isfinite(np.asarray(_generate._filter_logits(logits, 1.0, top_k, top_p)))

    assert kept(2, 1.0).tolist() == [[True, True, False, False]]
    assert kept(0, 0.7).tolist() == [[True, True, False, False]]
    assert kept(0, 0.5).tolist() == [[True, False, False, False]]
    assert kept(3, 0.9).tolist() == [[True, True, True, False]]
    assert kept(2, 0.9).tolist() == [[True, True, False, False]]  # top-p after top-k
    assert kept(0, 1.0).all()


def test_bad_arguments():
    model = _model(num_hidden_layers=1)
    with pytest.raises(ValueError, match="max_new_tokens"):
        lm.generate(model, [[1, 2]], max_new_tokens=0)
    with pytest.raises(ValueError, match="attention_mask"):
        lm.generate(model, [[1, 2]], attention_mask=[[1, 1, 1]], max_new_tokens=2)
    with pytest.raises(ValueError, match="side"):
        lm.pad_batch([[1]], side="middle")
