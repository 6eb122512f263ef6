"""H3Fusion: a mixture of separately aligned LoRA experts with a trained router.

Three stages on a :class:`fusers.lm.CausalLM` (see ``docs/h3fusion.md``):

1. **Experts**: one LoRA adapter on the FFN projections per alignment goal (helpfulness,
   harmlessness, honesty), trained on that goal's data with response-only loss
   (:func:`train_expert`).
2. **Mixture**: every layer's FFN becomes a routed block whose expert ``k`` is the base FFN
   plus adapter ``k``'s delta, with a router per layer (:func:`build_moe`).
3. **Alignment**: new LoRA on attention and on every expert, trained on the union of the
   three sets with ``L = L_LM + λ·L_gate + R`` (:func:`align_moe`).

:class:`H3Flags` holds every switch where the reference code and the fixed defaults differ.

Examples:
    >>> from fusers import h3
    >>> h3.H3Flags().top_k, h3.H3Flags.faithful().train_router
    (2, False)
"""

from ._data import GOALS as GOALS
from ._data import SFTExample as SFTExample
from ._data import encode_examples as encode_examples
from ._data import load_eval_prompts as load_eval_prompts
from ._data import load_goal as load_goal
from ._data import prompt_text as prompt_text
from ._losses import drift_regularizer as drift_regularizer
from ._losses import gate_loss as gate_loss
from ._losses import mean_routing as mean_routing
from ._losses import task_labels as task_labels
from ._moe import PROJECTIONS as PROJECTIONS
from ._moe import Adapter as Adapter
from ._moe import ExpertDelta as ExpertDelta
from ._moe import H3Flags as H3Flags
from ._moe import MoEFFN as MoEFFN
from ._moe import RouterParam as RouterParam
from ._moe import build_moe as build_moe
from ._moe import moe_blocks as moe_blocks
from ._moe import read_adapter as read_adapter
from ._moe import router_logits as router_logits
from ._moe import set_recording as set_recording
from ._pipeline import BUDGETS as BUDGETS
from ._pipeline import ROWS as ROWS
from ._pipeline import VARIANTS as VARIANTS
from ._pipeline import Budget as Budget
from ._pipeline import results_table as results_table
from ._pipeline import run_align as run_align
from ._pipeline import run_build as run_build
from ._pipeline import run_evaluate as run_evaluate
from ._pipeline import run_experts as run_experts
from ._train import SFTBatch as SFTBatch
from ._train import add_alignment_lora as add_alignment_lora
from ._train import align_moe as align_moe
from ._train import align_step as align_step
from ._train import batches as batches
from ._train import train_expert as train_expert
from ._train import trainable_filter as trainable_filter

__all__ = [
    "BUDGETS",
    "Budget",
    "GOALS",
    "ROWS",
    "VARIANTS",
    "results_table",
    "run_align",
    "run_build",
    "run_evaluate",
    "run_experts",
    "PROJECTIONS",
    "Adapter",
    "ExpertDelta",
    "H3Flags",
    "MoEFFN",
    "RouterParam",
    "SFTBatch",
    "SFTExample",
    "add_alignment_lora",
    "align_moe",
    "align_step",
    "batches",
    "build_moe",
    "drift_regularizer",
    "encode_examples",
    "gate_loss",
    "load_eval_prompts",
    "load_goal",
    "mean_routing",
    "moe_blocks",
    "prompt_text",
    "read_adapter",
    "router_logits",
    "set_recording",
    "task_labels",
    "train_expert",
    "trainable_filter",
]
