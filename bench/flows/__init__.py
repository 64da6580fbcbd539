"""Normalizing flows: the layer contract (`base`), the layers and the two architectures."""

from bench.flows.architectures import (
    ARCHITECTURES,
    MultiScaleFlow,
    build_flow,
    flow_from_config,
    nll_to_bpd,
    standard_normal_logprob,
)
from bench.flows.base import FlowLayer, FlowSequence
from bench.flows.layers import INV_MODES, ActNorm, AffineCoupling, InvConv1x1, Squeeze

__all__ = [
    "ARCHITECTURES",
    "INV_MODES",
    "ActNorm",
    "AffineCoupling",
    "FlowLayer",
    "FlowSequence",
    "InvConv1x1",
    "MultiScaleFlow",
    "Squeeze",
    "build_flow",
    "flow_from_config",
    "nll_to_bpd",
    "standard_normal_logprob",
]
