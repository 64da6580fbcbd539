"""Flow layers and architectures: round trips, log-determinants against autograd Jacobians,
parameter counts, ActNorm initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import check_flow_inverse_and_logdets

from bench import config
from bench.flows import (
    ActNorm,
    AffineCoupling,
    InvConv1x1,
    Squeeze,
    build_flow,
    standard_normal_logprob,
)
from bench.flows.layers import data_initialization, reference_path


def perturb(module: torch.nn.Module, scale: float = 0.05, seed: int = 1) -> None:
    """Move every parameter away from its (often identity) initialisation."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def tiny_flow(arch: str, inv_mode: str = "cached", dtype=torch.float64):
    """A flow on 3×8×8 inputs whose scales reach 4×4, 2×2 and 1×1, so every coupling-net
    kernel variant is exercised."""
    if arch == "coupling":
        steps, splits = (1, 2, 2), (True, True, False)
    else:
        steps, splits = (2, 2), (False, False)
    flow = build_flow(arch, hidden=6, steps=steps, splits=splits, size=8, inv_mode=inv_mode)
    flow = flow.to(dtype)
    flow.initialize(torch.rand(16, 3, 8, 8, dtype=dtype) * 2 - 1)
    perturb(flow, 0.05)
    return flow


def layer_cases():
    c = 8
    yield "squeeze", Squeeze(), (2, 2, 4, 4)
    yield "actnorm", ActNorm(c), (2, c, 4, 4)
    for size in (8, 4, 2, 1):
        for first in (False, True):
            yield (
                f"coupling{size}{'swap' if first else ''}",
                AffineCoupling(c, 5, size, first),
                (2, c, size, size),
            )
    for mode in ("recompute", "cached", "lu"):
        yield f"inv1x1-{mode}", InvConv1x1(c, mode), (2, c, 3, 3)


CASES = list(layer_cases())


@pytest.mark.parametrize("name,layer,shape", CASES, ids=[c[0] for c in CASES])
def test_layer_round_trip_and_logdet(name, layer, shape):
    layer = layer.double()
    x = torch.randn(*shape, dtype=torch.float64)
    layer(x)  # ActNorm data init
    perturb(layer, 0.1)
    z, ld = layer(x)
    xr, ldi = layer.inverse(z)
    assert ld.shape == (shape[0],) and ldi.shape == (shape[0],)
    torch.testing.assert_close(xr, x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(ldi, -ld, rtol=1e-9, atol=1e-9)
    # forward log-det against the autograd Jacobian, one sample at a time
    for b in range(shape[0]):
        xb = x[b : b + 1]
        jac = torch.autograd.functional.jacobian(lambda v: layer(v)[0], xb)
        jac = jac.reshape(xb.numel(), xb.numel())
        torch.testing.assert_close(ld[b], torch.linalg.slogdet(jac)[1], rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("arch", ["coupling", "glow"])
def test_flow_round_trip_and_jacobian(arch):
    flow = tiny_flow(arch)
    x = torch.rand(3, 3, 8, 8, dtype=torch.float64) * 2 - 1
    z, ld = flow(x)
    assert z.shape == (3, flow.dim)
    check_flow_inverse_and_logdets(flow, x, z, ld)


def test_couplings_are_perturbed_away_from_identity():
    flow = tiny_flow("coupling")
    for m in flow.modules():
        if isinstance(m, AffineCoupling):
            assert m.net.conv2.weight.abs().sum() > 0


@pytest.mark.parametrize(
    "arch,expected",
    [
        ("coupling", config.COUPLING_PARAMS_AT_512),
        ("glow", config.GLOW_PARAMS_AT_512),
    ],
)
def test_parameter_counts_at_width_512(arch, expected):
    flow = build_flow(arch, hidden=512)
    assert flow.num_params() == expected
    assert flow.num_steps() == 14


def test_lu_mode_keeps_parameter_count():
    assert (
        build_flow("glow", hidden=16, inv_mode="lu").num_params()
        == build_flow("glow", hidden=16).num_params()
    )


def test_latent_shapes():
    assert build_flow("coupling", 8).latent_shapes == [(96, 4, 4), (192, 2, 2), (768, 1, 1)]
    assert build_flow("glow", 8).latent_shapes == [(192, 4, 4)]


def test_actnorm_data_init_gives_zero_mean_unit_std():
    an = ActNorm(4)
    x = torch.randn(64, 4, 5, 5) * torch.tensor([1.0, 2.0, 3.0, 0.5]).view(1, 4, 1, 1) + 7
    with data_initialization():
        y, _ = an(x)
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3)), torch.ones(4), atol=1e-4, rtol=0)
    # initialised once: a second, different batch does not re-initialise
    loc = an.loc.clone()
    with data_initialization():
        an(x * 3)
    torch.testing.assert_close(an.loc, loc)
    # and the flag survives a state-dict round trip
    an2 = ActNorm(4)
    an2.load_state_dict(an.state_dict())
    assert an2._ready


def test_inverse_modes_agree():
    flow = tiny_flow("glow", "recompute")
    z = torch.randn(2, flow.dim, dtype=torch.float64)
    ref = flow.inverse(z)
    for mode in ("cached", "lu", "recompute"):
        for m in flow.modules():
            if isinstance(m, InvConv1x1):
                m.set_mode(mode)
        x, ld = flow.inverse(z)
        torch.testing.assert_close(x, ref[0], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(ld, ref[1], rtol=1e-9, atol=1e-9)


def test_cached_inverse_follows_weight_updates():
    conv = InvConv1x1(4, "cached").double()
    conv.requires_grad_(False)
    z = torch.randn(1, 4, 2, 2, dtype=torch.float64)
    conv.inverse(z)
    with torch.no_grad():
        conv.weight.add_(0.1 * torch.eye(4, dtype=torch.float64))
    x, _ = conv.inverse(z)
    torch.testing.assert_close(conv(x)[0], z)


def test_bits_per_dim_of_uniform_model_scale():
    flow = build_flow("coupling", hidden=4)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    flow.initialize(x)
    bpd = flow.bits_per_dim(x)
    z, ld = flow(x)
    expected = -(standard_normal_logprob(z) + ld) / (flow.dim * math.log(2)) + 4.0
    torch.testing.assert_close(bpd, expected)


def test_gradients_flow_to_z_only_when_frozen():
    flow = build_flow("coupling", hidden=4)
    flow.initialize(torch.rand(2, 3, 32, 32) * 2 - 1)
    flow.requires_grad_(False)
    z = torch.randn(2, flow.dim, requires_grad=True)
    x, ld = flow.inverse(z)
    (x.sum() + ld.sum()).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all()
    assert all(p.grad is None for p in flow.parameters())


def test_set_inv_mode_keeps_frozen_flow_frozen_and_records_mode():
    flow = build_flow("glow", hidden=4, steps=(1,), splits=(False,), size=4)
    flow.requires_grad_(False)
    flow.set_inv_mode("lu")
    assert not any(p.requires_grad for p in flow.parameters())
    assert flow.arch_config["inv_mode"] == "lu"
    from bench.flows import flow_from_config

    clone = flow_from_config(flow.arch_config)
    clone.load_state_dict(flow.state_dict())  # rebuilds in the recorded mode


@pytest.mark.parametrize("arch", ["coupling", "glow"])
@pytest.mark.parametrize("fused", [False, True])
def test_evaluation_after_training_steps_uses_current_weights(arch, fused):
    """Cached (folded) weights used in evaluation must follow optimiser updates, including
    fused optimisers that update parameters without bumping their version counters."""
    flow = build_flow(arch, hidden=4, steps=(1, 1), splits=(False, False), size=8)
    x = torch.rand(8, 3, 8, 8) * 2 - 1
    flow.initialize(x)
    flow.eval()
    with torch.no_grad():
        flow.log_prob(x)  # fills the caches
    flow.train()
    opt = torch.optim.Adam(flow.parameters(), lr=1e-2, fused=fused)
    for _ in range(3):
        loss = -flow.log_prob(x).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        trained = flow.log_prob(x)
        flow.eval()
        evaluated = flow.log_prob(x)
        z = torch.randn(2, flow.dim)
        x_eval = flow.inverse(z)[0]
        flow.train()
        x_train = flow.inverse(z)[0]
    torch.testing.assert_close(evaluated, trained, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(x_eval, x_train, rtol=1e-4, atol=1e-4)


def _state(flow) -> dict:
    return {k: v.clone() for k, v in flow.state_dict().items()}


def _same_state(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("arch", ["coupling", "glow"])
def test_initialize_initialises_every_actnorm_including_the_coupling_nets(arch):
    """PROTOCOL §2: every ActNorm, the 14 inside the coupling networks included, is initialised
    from the first batch (the fast path used to leave the nets' ActNorms at the identity)."""
    flow = build_flow(arch, hidden=16)
    norms = [m for m in flow.modules() if isinstance(m, ActNorm)]
    assert len(norms) == 28
    assert not flow.is_initialized()
    flow.initialize(torch.rand(16, 3, 32, 32) * 2 - 1)
    assert flow.is_initialized()
    assert all(bool(m.initialized) and m.logs.abs().sum() > 0 for m in norms)


@pytest.mark.parametrize("arch", ["coupling", "glow"])
def test_the_hidden_actnorm_sees_zero_mean_unit_std_at_init(arch):
    """Each net's ActNorm is initialised from the activations its conv really produces."""
    flow = build_flow(arch, hidden=16, steps=(1, 1, 1, 1), splits=(False,) * 4)
    x = torch.rand(32, 3, 32, 32) * 2 - 1
    flow.initialize(x)
    seen = {}

    def hook(module, args, output):
        seen[module] = output[0]

    nets = [m for m in flow.modules() if isinstance(m, AffineCoupling)]
    handles = [n.net.norm.register_forward_hook(hook) for n in nets]
    with reference_path(), torch.no_grad():
        flow(x)
    for h in handles:
        h.remove()
    first = seen[nets[0].net.norm]
    torch.testing.assert_close(first.mean(dim=(0, 2, 3)), torch.zeros(16), atol=1e-4, rtol=0)


@pytest.mark.parametrize("arch", ["coupling", "glow"])
def test_fast_and_reference_paths_agree_from_the_first_batch(arch):
    """Same state, same function on both paths, right after initialisation and in training
    mode with gradients (the first training step)."""
    torch.manual_seed(0)
    flow = build_flow(arch, hidden=16).double()
    x = torch.rand(8, 3, 32, 32, dtype=torch.float64) * 2 - 1
    flow.initialize(x)
    for training in (False, True):
        flow.train(training)
        with torch.set_grad_enabled(training):
            fast = flow(x)
            with reference_path():
                ref = flow(x)
        torch.testing.assert_close(fast[0], ref[0], rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(fast[1], ref[1], rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("arch", ["coupling", "glow"])
@pytest.mark.parametrize("initialised", [False, True])
@pytest.mark.parametrize("reference", [False, True])
def test_evaluating_a_flow_never_changes_its_state(arch, initialised, reference):
    """Forward, inverse, log-likelihood and sampling, in eval and train mode, with and without
    gradients, on each path: the state_dict is identical before and after (one reference
    forward pass on a trained flow used to re-initialise the nets' ActNorms)."""
    flow = build_flow(arch, hidden=8)
    x = torch.rand(4, 3, 32, 32) * 2 - 1
    if initialised:
        flow.initialize(x)
    before = _state(flow)
    with reference_path(reference):
        for training in (False, True):
            flow.train(training)
            with torch.set_grad_enabled(training):
                flow(x)
                flow.log_prob(x * 0.5)
                flow.inverse(torch.randn(3, flow.dim))
                flow.sample(2)
    assert _same_state(before, _state(flow))
