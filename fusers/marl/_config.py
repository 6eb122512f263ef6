"""Settings of MARL-Focal: the two modes (faithful / fixed), flag by flag."""

from __future__ import annotations

import dataclasses
from typing import Any

from ensembles.util import InputError

__all__ = ["MODES", "MarlConfig"]

MODES = ("fixed", "faithful")
DEFAULT_WEIGHTS = (0.5, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0)


@dataclasses.dataclass(frozen=True)
class MarlConfig:
    """Every knob of MARL-Focal. Build one with :meth:`for_mode` (``"fixed"`` or ``"faithful"``).

    Protocol and hyperparameters (both modes):
        window: ``W`` rows of history in the diversity state (0 = all past rows).
        weights: eight window-metric weights (focal, plurality, Fleiss κ, Q, ρ, disagreement,
            oracle κ, entropy); the diversity terms are a state feature only, never a reward.
        alpha: the decider's size penalty on errors.
        select_passes, ensemble_passes: passes of phase 1 (decider learns, plurality fusion) and
            phase 2 (decider frozen, aggregator learns).
        gamma_decider, gamma_aggregator, lr_decider, lr_aggregator, clip: returns, Adam rates,
            PPO clip ε.
        update_freq: steps per update (one buffer).
        test_window: the test pass's window (the reference uses 0).

    Differences between the published code (faithful) and the fixed default:
        algorithm: ``"reinforce"`` (faithful: the reference's PPO ratio is identically 1, no
            critic) or ``"ppo"`` (fixed: clipped surrogate on the ratio to the rollout policy,
            ``ppo_epochs`` passes over each buffer, learned value baseline).
        agg_prob_gradient: faithful aggregator loss ``-Â·q(ŷ)`` with the greedy ``ŷ`` and the
            probability itself; fixed: ``-Â·log q(a)`` with a sampled ``a`` (greedy at test).
        agg_exp_inputs: faithful feeds ``exp(scores)``; fixed feeds per-member probabilities
            (each score row divided by its sum).
        window_double_subtract: faithful scores rows ``W+2 … n-W-1`` (the window subtracted twice);
            fixed scores ``max(W, 1) … n-1``.
        faithful_metrics: the reference's window statistics (GD = 1 for a member never wrong,
            pair statistics without 0/0 guards, a NaN total becomes 0); fixed uses the library
            definitions (0/0 conventions of ``docs/marl.md``; an undefined term contributes 0).
        carry_buffers: faithful keeps a partial buffer across passes (one long trajectory);
            fixed updates on it at the end of each pass.
        restore_best: fixed restores each agent's best pass (training accuracy of the pass); the
            reference's bookkeeping is a no-op (last policy).
        test_default_weights: faithful tests with weights (0.5, 0.5, 0, …) and α = 1 whatever
            the training settings; fixed tests with the training settings.
        greedy_eval: fixed takes the most likely team and answer when evaluating frozen; faithful
            samples the team as during training.
        accuracy_minus_one: faithful test accuracy divides by ``steps - 1``; fixed by ``steps``.
        sentinel: the state's window score for teams of fewer than two members: faithful
            ``-99`` (saturates the decider's first layer: on a two-model toy with Adam 1e-2 the
            decider then never leaves the all-ones team), fixed ``-1`` (below any window score
            of the default weights).

        aggregator: ``"mlp"`` (faithful: the reference's class-logit network fed the consulted
            members' inputs; from a few dozen updates of ±1 rewards it often settles on a
            constant class) or ``"vote"`` (fixed: :class:`~fusers.marl.VoteAggregator`, a
            learnable weighted vote that starts as the plurality of the consulted models; its
            Adam rate ``lr_aggregator`` is 1e-2, set a priori because its parameters are O(1)
            per-model log-weights that 1e-3 would barely move in the ~100 steps of a run).
        val_fraction: share of the training rows (seeded by the seed and the task) held out
            as a validation slice: the agents train on the rest, and the frozen policy is scored
            on the slice (fixed 0.2; faithful 0: no slice).
        guard: when the trained router is not better than the best single model (chosen on the
            other training rows) on the validation slice, the frozen policy consults that best
            single model (chosen on all training rows) alone (fixed: on; faithful: off). No
            test row is read by this choice.

    Both modes report test accuracy twice: ``online`` (the reference protocol: both agents keep
    learning from test rewards, i.e. test labels) and ``frozen`` (no update, and the window is
    the training rows: no test label is read). The fixed mode's headline number is ``frozen``.

    Example:
        >>> MarlConfig.for_mode("faithful").algorithm, MarlConfig.for_mode("fixed").algorithm
        ('reinforce', 'ppo')
        >>> MarlConfig.for_mode("fixed", window=50).window
        50
    """

    mode: str = "fixed"
    window: int = 0
    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    alpha: float = 1.0
    select_passes: int = 15
    ensemble_passes: int = 15
    gamma_decider: float = 0.99
    gamma_aggregator: float = 0.5
    lr_decider: float = 1e-3
    lr_aggregator: float = 1e-3
    clip: float = 0.2
    update_freq: int = 100
    test_window: int = 0
    algorithm: str = "ppo"
    ppo_epochs: int = 4
    value_coef: float = 0.5
    agg_prob_gradient: bool = False
    agg_exp_inputs: bool = False
    window_double_subtract: bool = False
    faithful_metrics: bool = False
    carry_buffers: bool = False
    restore_best: bool = True
    test_default_weights: bool = False
    greedy_eval: bool = True
    accuracy_minus_one: bool = False
    sentinel: float = -1.0
    aggregator: str = "vote"
    val_fraction: float = 0.2
    guard: bool = True

    @classmethod
    def for_mode(cls, mode: str = "fixed", **overrides: Any) -> MarlConfig:
        """The settings of ``mode`` with ``overrides`` applied (validated)."""
        if mode not in MODES:
            raise InputError(f"mode: unknown mode {mode!r}; use fixed or faithful")
        base: dict[str, Any] = {"mode": mode}
        if mode == "faithful":
            base.update(
                algorithm="reinforce",
                agg_prob_gradient=True,
                agg_exp_inputs=True,
                window_double_subtract=True,
                faithful_metrics=True,
                carry_buffers=True,
                restore_best=False,
                test_default_weights=True,
                greedy_eval=False,
                accuracy_minus_one=True,
                sentinel=-99.0,
                aggregator="mlp",
                val_fraction=0.0,
                guard=False,
            )
        else:
            base.update(lr_aggregator=1e-2)
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise InputError(f"config: unknown setting {unknown[0]!r}")
        base.update(overrides)
        if "weights" in base:
            base["weights"] = tuple(float(w) for w in base["weights"])
        return cls(**base).validated()

    def validated(self) -> MarlConfig:
        """``self`` after range checks (one-line :class:`InputError` otherwise)."""
        if self.algorithm not in ("reinforce", "ppo"):
            raise InputError(f"algorithm: use reinforce or ppo, got {self.algorithm!r}")
        if self.aggregator not in ("mlp", "vote"):
            raise InputError(f"aggregator: use mlp or vote, got {self.aggregator!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise InputError(f"val_fraction: must be in [0, 1), got {self.val_fraction}")
        if self.guard and self.val_fraction == 0:
            raise InputError("guard: needs a validation slice (val_fraction > 0)")
        if len(self.weights) != 8:
            raise InputError(f"weights: need 8 metric weights, got {len(self.weights)}")
        for name in ("window", "test_window"):
            if getattr(self, name) < 0:
                raise InputError(f"{name}: must be >= 0, got {getattr(self, name)}")
        for name in ("select_passes", "ensemble_passes", "update_freq", "ppo_epochs"):
            if getattr(self, name) < 1 and not (
                name.endswith("passes") and getattr(self, name) == 0
            ):
                raise InputError(f"{name}: must be >= 1, got {getattr(self, name)}")
        for name in ("gamma_decider", "gamma_aggregator"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"{name}: must be in [0, 1], got {getattr(self, name)}")
        for name in ("lr_decider", "lr_aggregator", "clip"):
            if not getattr(self, name) > 0:
                raise InputError(f"{name}: must be > 0, got {getattr(self, name)}")
        return self

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = dataclasses.asdict(self)
        d["weights"] = list(self.weights)
        return d
