"""Plain containers for the non-convex networks read back from convex solutions.

``TwoLayerNetwork`` computes

    f(x) = Σ_j  σ_j(x) · (u_jᵀ x + b_j) · v_j             (v_j ∈ R^c, column j of W2)

with σ_j(x) = 1[u_jᵀ x + b_j ≥ 0] for a ReLU network (so the term is (u_jᵀx + b_j)_+ v_j) and
σ_j(x) = 1[g_jᵀ x + h_j ≥ 0] with fixed gates (g_j, h_j) for a gated-ReLU network.

Weights use ``torch.nn.Linear`` layout: ``first_layer_weights`` (m x d), ``first_layer_bias``
(m,), ``second_layer_weights`` (c x m), and an optional ``output_bias`` (c,) that is **not**
regularised (scikit-learn's ``fit_intercept`` semantics). The training objective is

    loss(f(X), Y) + (reg/2) (||W1 S||_F^2 + ||b1 + W1 μ||^2 + ||W2||_F^2)

with the loss summed over samples (see :mod:`convexnn.losses`). ``μ = input_offset`` and
``S = diag(input_scale)`` give the frame in which the weights are penalised: an estimator that
standardises its inputs internally stores the mean and scale it used, so the weight decay is that
of the standardised inputs while ``W1``, ``b1`` act on raw inputs (the predictions are the same;
the fit is then invariant to the scale of X). Without them (the default) the penalty is the
papers' plain ||W1||² + ||b1||² + ||W2||².
Networks save to ``.npz`` + JSON metadata (no pickle): loading executes no code.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from ..losses import Loss, get_loss
from ..model_io import read_network_file
from .base import as_tensor, save_npz

__all__ = ["TwoLayerNetwork", "GatedReLULayer", "load_network"]

_OPTIONAL = ("gate_weights", "gate_bias", "output_bias", "input_offset", "input_scale")


class GatedReLULayer(nn.Module):
    """x ↦ 1[G x + h ≥ 0] ⊙ (W x + b): the hidden layer of a gated-ReLU network."""

    def __init__(self, weight: Tensor, bias: Tensor, gate_weight: Tensor, gate_bias: Tensor):
        super().__init__()
        self.linear = nn.Linear(weight.shape[1], weight.shape[0], dtype=weight.dtype,
                                device=weight.device)
        with torch.no_grad():
            self.linear.weight.copy_(weight)
            self.linear.bias.copy_(bias)
        self.register_buffer("gate_weight", gate_weight.clone())
        self.register_buffer("gate_bias", gate_bias.clone())

    def forward(self, x: Tensor) -> Tensor:
        gate = (x @ self.gate_weight.T + self.gate_bias >= 0).to(x.dtype)
        return gate * self.linear(x)


@dataclass
class TwoLayerNetwork:
    """A two-layer (ReLU or gated-ReLU) network; see the module docstring for the math."""

    first_layer_weights: Tensor  # (m, d)
    first_layer_bias: Tensor  # (m,)
    second_layer_weights: Tensor  # (c, m)
    activation: str = "relu"  # "relu" | "gated"
    gate_weights: Tensor | None = None  # (m, d), gated only
    gate_bias: Tensor | None = None  # (m,), gated only
    output_bias: Tensor | None = None  # (c,), unregularised output offset
    input_offset: Tensor | None = None  # (d,), μ of the penalty frame (see module docstring)
    input_scale: Tensor | None = None  # (d,), S of the penalty frame

    def __post_init__(self) -> None:
        m = self.first_layer_weights.shape[0]
        if self.first_layer_weights.ndim != 2:
            raise ValueError("first_layer_weights must be (m, d)")
        if self.first_layer_bias.shape != (m,):
            raise ValueError(f"first_layer_bias must be ({m},), got "
                             f"{tuple(self.first_layer_bias.shape)}")
        if self.second_layer_weights.ndim != 2 or self.second_layer_weights.shape[1] != m:
            raise ValueError(f"second_layer_weights must be (c, {m})")
        if self.activation not in ("relu", "gated"):
            raise ValueError(f"activation must be 'relu' or 'gated', got {self.activation!r}")
        if self.activation == "gated" and (self.gate_weights is None or self.gate_bias is None):
            raise ValueError("a gated network needs gate_weights and gate_bias")
        c, d = self.second_layer_weights.shape[0], self.first_layer_weights.shape[1]
        for name, size in (("output_bias", c), ("input_offset", d), ("input_scale", d)):
            t = getattr(self, name)
            if t is not None and tuple(t.shape) != (size,):
                raise ValueError(f"{name} must be ({size},), got {tuple(t.shape)}")

    # ------------------------------------------------------------------ shapes
    @property
    def n_neurons(self) -> int:
        return int(self.first_layer_weights.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.first_layer_weights.shape[1])

    @property
    def n_outputs(self) -> int:
        return int(self.second_layer_weights.shape[0])

    # ----------------------------------------------------------------- forward
    def hidden(self, X) -> Tensor:
        W = self.first_layer_weights
        X = as_tensor(X, W)
        pre = X @ W.T + self.first_layer_bias
        if self.activation == "relu":
            return torch.relu(pre)
        gate = X @ self.gate_weights.T + self.gate_bias >= 0
        return pre * gate.to(pre.dtype)

    def forward(self, X) -> Tensor:
        """Raw outputs f(X), shape (n, c)."""
        Z = self.hidden(X) @ self.second_layer_weights.T
        return Z if self.output_bias is None else Z + self.output_bias

    def frame_weights(self) -> tuple[Tensor, Tensor]:
        """First-layer (weights, bias) in the penalty frame: (W1 S, b1 + W1 μ)."""
        W, b = self.first_layer_weights, self.first_layer_bias
        if self.input_offset is not None:
            b = b + W @ self.input_offset
        if self.input_scale is not None:
            W = W * self.input_scale
        return W, b

    __call__ = forward

    def penalty(self) -> Tensor:
        """||W1 S||² + ||b1 + W1 μ||² + ||W2||² (the weight-decay sum, without reg/2)."""
        W, b = self.frame_weights()
        return (W**2).sum() + (b**2).sum() + (self.second_layer_weights**2).sum()

    def objective(self, X, Y, reg: float, loss: str | Loss = "squared") -> float:
        """Non-convex training objective ``loss(f(X), Y) + (reg/2)·penalty``.

        ``Y`` is the loss's target encoding: real values (squared), ±1 (logistic),
        one-hot (cross-entropy); a 1-D ``Y`` is treated as one column.
        """
        lo = get_loss(loss)
        Z = self.forward(X)
        Yt = as_tensor(Y, Z)
        if Yt.ndim == 1:
            Yt = Yt[:, None]
        return float(lo.value(Z, Yt) + 0.5 * reg * self.penalty())

    # ------------------------------------------------------------------ export
    def to_torch(self) -> nn.Module:
        """``nn.Sequential(Linear, ReLU, Linear)`` (or a gated layer) with the same outputs."""
        m, d = self.first_layer_weights.shape
        W1 = self.first_layer_weights.detach()
        kw = {"dtype": W1.dtype, "device": W1.device}
        out = nn.Linear(m, self.n_outputs, bias=self.output_bias is not None, **kw)
        with torch.no_grad():
            out.weight.copy_(self.second_layer_weights.detach())
            if self.output_bias is not None:
                out.bias.copy_(self.output_bias.detach())
        if self.activation == "relu":
            first = nn.Linear(d, m, **kw)
            with torch.no_grad():
                first.weight.copy_(W1)
                first.bias.copy_(self.first_layer_bias.detach())
            model = nn.Sequential(first, nn.ReLU(), out)
        else:
            model = nn.Sequential(
                GatedReLULayer(W1, self.first_layer_bias.detach(),
                               self.gate_weights.detach(), self.gate_bias.detach()),
                out,
            )
        return model.to(dtype=W1.dtype, device=W1.device)

    @classmethod
    def from_torch(cls, model: nn.Module) -> TwoLayerNetwork:
        """Read a ``Sequential(Linear, ReLU, Linear)`` (e.g. trained by Adam) into a network.

        An output-layer bias becomes the (unregularised) ``output_bias``.
        """
        layers = [mod for mod in model.modules() if isinstance(mod, nn.Linear)]
        if len(layers) != 2:
            raise ValueError("expected a model with exactly two nn.Linear layers")
        first, second = layers
        W1 = first.weight.detach().clone()
        b = first.bias.detach().clone() if first.bias is not None else torch.zeros(
            first.out_features, dtype=W1.dtype)
        ob = second.bias.detach().clone() if second.bias is not None else None
        return cls(W1, b, second.weight.detach().clone(), output_bias=ob)

    def to(self, device=None, dtype=None) -> TwoLayerNetwork:
        def mv(t):
            return None if t is None else t.to(device=device, dtype=dtype)

        return TwoLayerNetwork(mv(self.first_layer_weights), mv(self.first_layer_bias),
                               mv(self.second_layer_weights), self.activation,
                               mv(self.gate_weights), mv(self.gate_bias), mv(self.output_bias),
                               mv(self.input_offset), mv(self.input_scale))

    # -------------------------------------------------------------------- I/O
    def save(self, path: str | Path) -> None:
        """Save to ``path`` (.npz of arrays + JSON metadata inside; no pickle)."""
        arrays = {"first_layer_weights": self.first_layer_weights,
                  "first_layer_bias": self.first_layer_bias,
                  "second_layer_weights": self.second_layer_weights}
        for name in _OPTIONAL:
            t = getattr(self, name)
            if t is not None:
                arrays[name] = t
        save_npz(path, arrays, {"format": "convexnn.TwoLayerNetwork", "version": 1,
                                "activation": self.activation})


def load_network(path: str | Path) -> TwoLayerNetwork:
    """Load a network saved by :meth:`TwoLayerNetwork.save` (``allow_pickle=False``).

    The file is checked first (:func:`convexnn.model_io.read_network_file`): a missing,
    truncated or inconsistent file raises one ``ValueError`` naming it.
    """
    meta, arrays = read_network_file(path)
    t = {k: torch.from_numpy(a) for k, a in arrays.items()}
    return TwoLayerNetwork(t["first_layer_weights"], t["first_layer_bias"],
                           t["second_layer_weights"], meta["activation"],
                           **{k: t.get(k) for k in _OPTIONAL})
