"""Without the 'lm' extra (transformers, tokenizers, safetensors), fusers and fusers.lm still
import, the model runs and trains, and every function needing the extra says so in one line."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

BLOCKER = textwrap.dedent(
    """
    import importlib.abc, sys

    BLOCKED = ("transformers", "tokenizers", "safetensors")

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, Blocker())
    """
)

PROBE = textwrap.dedent(
    """
    import json, tempfile
    import fusers, fusers.lm as lm
    from flax import nnx
    import jax.numpy as jnp
    from ensembles.util import InputError

    loaded = sorted({m.split(".")[0] for m in sys.modules} & set(BLOCKED))
    cfg = lm.DecoderConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                           num_hidden_layers=1, num_attention_heads=2)
    model = lm.CausalLM(cfg, rngs=nnx.Rngs(0))
    shape = list(model(jnp.ones((1, 3), jnp.int32)).shape)
    losses = lm.fit(model, None, iter([lm.make_batch([[1, 2, 3]])] * 2), steps=2)
    errors = {}
    d = tempfile.mkdtemp()
    calls = {
        "save_pretrained": lambda: lm.save_pretrained(model, d),
        "from_pretrained": lambda: lm.from_pretrained(d),
        "train_tokenizer": lambda: lm.train_tokenizer(["a b c"], vocab_size=300),
        "save_adapters": lambda: lm.save_adapters(
            lm.apply_lora(lm.CausalLM(cfg, rngs=nnx.Rngs(0)), rank=2, rngs=nnx.Rngs(1)), d),
    }
    for name, call in calls.items():
        try:
            call()
            errors[name] = None
        except InputError as exc:
            errors[name] = str(exc)
    print(json.dumps({"loaded": loaded, "shape": shape, "losses": len(losses),
                      "errors": errors}))
    """
)


def test_fusers_lm_without_the_lm_extra(tmp_path):
    code = BLOCKER + PROBE
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    doc = json.loads(out.stdout.strip().splitlines()[-1])
    assert doc["loaded"] == []
    assert doc["shape"] == [1, 3, 32]
    assert doc["losses"] == 2
    for name, message in doc["errors"].items():
        assert message is not None, f"{name} did not refuse without the extra"
        assert message.startswith(f"fusers.lm.{name} needs the 'lm' extra"), message
        assert message.endswith("pip install 'focal-fusion[lm]'"), message
        assert "\n" not in message


def test_the_blocker_blocks():
    code = BLOCKER + "import safetensors\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode != 0 and "No module named 'safetensors'" in out.stderr
