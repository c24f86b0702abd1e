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
