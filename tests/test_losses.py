import math

import pytest
import torch

from convexnn.losses import get_loss


@pytest.mark.parametrize("name,c", [("squared", 1), ("squared", 3), ("logistic", 1),
                                    ("cross_entropy", 4)])
def test_gradient_and_fenchel_young(name, c):
    torch.manual_seed(0)
    loss = get_loss(name)
    Z = torch.randn(7, c, dtype=torch.float64, requires_grad=True)
    if name == "logistic":
        Y = torch.where(torch.rand(7, 1) > 0.5, 1.0, -1.0).double()
    elif name == "cross_entropy":
        Y = torch.eye(c, dtype=torch.float64)[torch.randint(0, c, (7,))]
    else:
        Y = torch.randn(7, c, dtype=torch.float64)
    v = loss.value(Z, Y)
    v.backward()
    g = loss.grad(Z.detach(), Y)
    assert torch.allclose(g, Z.grad, atol=1e-12)
    # Fenchel-Young equality at Λ = ∇L(Z): L(Z) + L*(Λ) = <Λ, Z>
    lhs = float(v) + float(loss.conjugate(g, Y))
    assert lhs == pytest.approx(float((g * Z.detach()).sum()), abs=1e-10)
    # and the inequality elsewhere (random scaled Λ in the domain)
    for s in (0.3, 0.9):
        lhs = float(v) + float(loss.conjugate(s * g, Y))
        assert lhs >= float((s * g * Z.detach()).sum()) - 1e-10


def test_conjugate_outside_domain_is_infinite():
    Y = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    assert torch.isinf(get_loss("logistic").conjugate(torch.tensor([[0.5], [0.1]]).double(), Y))
    Yc = torch.eye(2, dtype=torch.float64)
    assert torch.isinf(get_loss("cross_entropy").conjugate(torch.ones(2, 2).double(), Yc))


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("hinge2")


@pytest.mark.parametrize("name,c", [("squared", 2), ("logistic", 1), ("cross_entropy", 4)])
@pytest.mark.parametrize("t", [1e-3, 1.0, 1e3])
def test_prox_satisfies_its_optimality_condition(name, c, t):
    """Z = prox(V): ∇L(Z) + (Z − V)/t = 0, from a cold and from a warm start."""
    loss = get_loss(name)
    g = torch.Generator().manual_seed(1)
    V = 4 * torch.randn(200, c, generator=g, dtype=torch.float64)
    if name == "logistic":
        Y = torch.where(torch.rand(200, 1, generator=g) < 0.5, -1.0, 1.0).double()
    elif name == "cross_entropy":
        Y = torch.eye(c, dtype=torch.float64)[torch.randint(0, c, (200,), generator=g)]
    else:
        Y = torch.randn(200, c, generator=g, dtype=torch.float64)
    for Z0 in (None, V + 1.0):
        Z = loss.prox(V, Y, t, Z0=Z0)
        resid = loss.grad(Z, Y) + (Z - V) / t
        assert float(resid.abs().max()) <= 1e-9 * (1 + float(V.abs().max()) / t)


def _targets(name, n, c, g):
    if name == "logistic":
        return torch.where(torch.rand(n, 1, generator=g) < 0.5, -1.0, 1.0).double()
    if name == "cross_entropy":
        return torch.eye(c, dtype=torch.float64)[torch.randint(0, c, (n,), generator=g)]
    return torch.randn(n, c, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("name,c", [("squared", 2), ("logistic", 1), ("cross_entropy", 4)])
def test_fused_value_and_grad_match_value_and_grad(name, c):
    loss = get_loss(name)
    g = torch.Generator().manual_seed(2)
    Z = 30 * torch.randn(50, c, generator=g, dtype=torch.float64)  # large: overflow-prone
    Y = _targets(name, 50, c, g)
    v, G = loss.value_and_grad(Z, Y)
    assert torch.isfinite(v)
    assert float(v) == pytest.approx(float(loss.value(Z, Y)), rel=1e-13)
    assert torch.allclose(G, loss.grad(Z, Y), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("name,c", [("squared", 1), ("logistic", 1), ("cross_entropy", 3)])
def test_network_value_and_grad_match_autograd(name, c, smooth):
    """The descent's hand-written objective and gradient equal autograd's (ReLU, and the
    softplus smoothing with one width per neuron)."""
    from convexnn.pipelines.local import value_and_grad

    g = torch.Generator().manual_seed(3)
    X = torch.randn(40, 4, generator=g, dtype=torch.float64)
    Y = _targets(name, 40, c, g)
    p = [torch.randn(s, generator=g, dtype=torch.float64).requires_grad_()
         for s in [(6, 4), (6,), (c, 6), (c,)]]
    tau = torch.linspace(0.05, 0.5, 6, dtype=torch.float64) if smooth else None
    loss, reg = get_loss(name), 0.7
    A = X @ p[0].T + p[1]
    H = torch.nn.functional.softplus(A / tau) * tau if smooth else torch.relu(A)
    f = loss.value(H @ p[2].T + p[3], Y) + 0.5 * reg * sum((q ** 2).sum() for q in p[:3])
    f.backward()
    f2, grads = value_and_grad([q.detach() for q in p], X, Y, loss, reg, tau)
    # smoothed: torch's softplus is linear beyond 20 (an e^-20 relative difference from the
    # exact sigmoid derivative used by hand)
    rtol = 1e-8 if smooth else 1e-12
    assert f2 == pytest.approx(float(f), rel=1e-13)
    for a, q in zip(grads, p):
        assert torch.allclose(a, q.grad, rtol=rtol, atol=rtol)


@pytest.mark.parametrize("name,c", [("logistic", 1), ("cross_entropy", 3)])
def test_float32_gradients_are_in_the_conjugate_domain(name, c):
    """A float32 gradient is a dual point (finite conjugate, equal to float64's to float32
    precision); a point clearly outside the domain is still refused."""
    g = torch.Generator().manual_seed(5)
    Y = _targets(name, 200, c, g)
    Z = 3 * torch.randn(200, c, generator=g, dtype=torch.float64)
    loss = get_loss(name)
    G32 = loss.grad(Z.float(), Y.float())
    v32 = float(loss.conjugate(G32, Y.float()))
    v64 = float(loss.conjugate(loss.grad(Z, Y), Y))
    assert math.isfinite(v32) and v32 == pytest.approx(v64, rel=1e-4, abs=1e-3)
    assert loss.conjugate(G32 + 1e-3, Y.float()) == math.inf
