"""Normalizing flows: the layer contract (`base`), the layers, the architecture type and its
registry (`architectures`: the built-ins `coupling` and `glow`), and the multi-scale flow
assembled from one (`multiscale`)."""

from bench.flows import coupling, glow  # noqa: F401 - importing registers the built-ins
from bench.flows.architectures import ARCHITECTURES, FLOWS, FlowArchitecture, get_architecture
from bench.flows.base import FlowLayer, FlowSequence
from bench.flows.layers import INV_MODES, ActNorm, AffineCoupling, InvConv1x1, Squeeze
from bench.flows.multiscale import (
    MultiScaleFlow,
    build_flow,
    flow_from_config,
    nll_to_bpd,
    standard_normal_logprob,
)

__all__ = [
    "ARCHITECTURES",
    "FLOWS",
    "INV_MODES",
    "ActNorm",
    "AffineCoupling",
    "FlowArchitecture",
    "FlowLayer",
    "FlowSequence",
    "InvConv1x1",
    "MultiScaleFlow",
    "Squeeze",
    "build_flow",
    "flow_from_config",
    "get_architecture",
    "nll_to_bpd",
    "standard_normal_logprob",
]
