"""Old import path of :mod:`convexnn.formulations.sdp.neuron` (the neuron SDP certificate)."""

from .sdp.neuron import NeuronBound, neuron_congruence, neuron_sdp_bound, scaled_gamma_bound

__all__ = ["NeuronBound", "neuron_sdp_bound", "scaled_gamma_bound", "neuron_congruence"]
