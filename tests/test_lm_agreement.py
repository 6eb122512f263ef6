"""Numerical agreement with transformers' PyTorch models on tiny random checkpoints (float32)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest
from test_lm_support import CASES, HAS_TORCH, NO_TORCH_REASON, VOCAB, hf_model, make_checkpoint

from fusers import lm

pytestmark = pytest.mark.skipif(not HAS_TORCH, reason=NO_TORCH_REASON)

TOL = 1e-4


def _ids(batch: int = 2, length: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(3, VOCAB, size=(batch, length))


@pytest.mark.parametrize("case", sorted(CASES))
def test_logits_match_transformers(tmp_path, case):
    import torch

    path = make_checkpoint(tmp_path / case, case)
    ref_model = hf_model(path)
    ids = _ids()
    with torch.no_grad():
        ref = ref_model(torch.tensor(ids)).logits.numpy()
    model, _ = lm.from_pretrained(path, tokenizer=False)
    ours = np.asarray(model(jnp.asarray(ids)))
    assert ours.shape == (2, 24, VOCAB)
    np.testing.assert_allclose(ours, ref, atol=TOL, rtol=0)
    assert np.abs(ref).max() > 0.1  # the comparison is not between near-zero logits


@pytest.mark.parametrize("case", ["llama", "mistral", "qwen2"])
def test_left_padded_batch_matches_transformers(tmp_path, case):
    """Padding mask and positions counted from each row's first real token."""
    import torch

    path = make_checkpoint(tmp_path / case, case)
    ref_model = hf_model(path)
    ids = _ids(length=12)
    mask = np.ones_like(ids)
    mask[0, :5] = 0
    ids[0, :5] = 0
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    with torch.no_grad():
        ref = ref_model(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            position_ids=torch.tensor(positions),
        ).logits.numpy()
    model, _ = lm.from_pretrained(path, tokenizer=False)
    ours = np.asarray(model(jnp.asarray(ids), attention_mask=jnp.asarray(mask)))
    real = mask.astype(bool)
    np.testing.assert_allclose(ours[real], ref[real], atol=TOL, rtol=0)


@pytest.mark.parametrize("case", ["llama-tied-bias", "qwen2"])
def test_our_save_loads_in_transformers(tmp_path, case):
    import torch

    src = make_checkpoint(tmp_path / "src", case)
    model, _ = lm.from_pretrained(src, tokenizer=False)
    out = lm.save_pretrained(model, tmp_path / "ours", max_shard_size="40KB")
    assert (out / "model.safetensors.index.json").is_file()
    ref_model = hf_model(out)
    ids = _ids(length=10)
    with torch.no_grad():
        ref = ref_model(torch.tensor(ids)).logits.numpy()
    np.testing.assert_allclose(np.asarray(model(jnp.asarray(ids))), ref, atol=TOL, rtol=0)


def test_greedy_generation_matches_transformers(tmp_path):
    import torch

    path = make_checkpoint(tmp_path / "llama", "llama")
    ref_model = hf_model(path)
    ids = _ids(length=6)
    mask = np.ones_like(ids)
    mask[1, :2] = 0
    ids[1, :2] = 0
    with torch.no_grad():
        ref = ref_model.generate(
            torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            max_new_tokens=8,
            min_new_tokens=8,
            do_sample=False,
            pad_token_id=0,
        ).numpy()[:, 6:]
    model, _ = lm.from_pretrained(path, tokenizer=False)
    out = lm.generate(model, ids, attention_mask=mask, max_new_tokens=8, stop_tokens=())
    np.testing.assert_array_equal(np.asarray(out.tokens), ref)
