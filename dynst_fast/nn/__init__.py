"""Gated building blocks (DESIGN.md section 5), each with its compacted counterpart.

A backbone built from these blocks satisfies the equivalence rule by construction: its
compacted model, assembled from the counterparts, equals the gated model with a 0/1
active set, and costs ~K instead of N.

=========================  ===========================================================
gated block                compacted counterpart
=========================  ===========================================================
``TemporalGLU``            itself: it acts on each sensor's own stream
``GatedGraphConv``         ``CompactGraphConv``: the layer over the induced subgraph
``GraphReadout``           ``CompactGraphReadout``: from K active sensors to all N over
                           the bipartite graph
``GatedAttention``,        themselves on the K active tokens with their gates
``GatedTransformerBlock``
``MaskTokenDecoder``       ``CompactMaskTokenDecoder``: mask tokens at the N - K others
``NeighbourReadout``       ``CompactNeighbourReadout``: attention of every sensor over its
                           m nearest active sensors (``ops.nearest_active``, picked once)
=========================  ===========================================================

Graph blocks hold the model's ``CSRGraph`` (one object, shared); their counterparts
share one :class:`ActiveGraph` (the active set's subgraph and read-out graph, built once).
"""

from __future__ import annotations

from .active_graph import ActiveGraph
from .attention import GatedAttention, GatedTransformerBlock
from .graph_conv import CompactGraphConv, GatedGraphConv
from .mask_decoder import CompactMaskTokenDecoder, MaskTokenDecoder
from .neighbour_readout import CompactNeighbourReadout, NeighbourReadout
from .readout import CompactGraphReadout, GraphReadout, ReadoutTerms
from .temporal import TemporalGLU

__all__ = [
    "ActiveGraph",
    "TemporalGLU",
    "GatedGraphConv",
    "CompactGraphConv",
    "GraphReadout",
    "CompactGraphReadout",
    "ReadoutTerms",
    "GatedAttention",
    "GatedTransformerBlock",
    "MaskTokenDecoder",
    "CompactMaskTokenDecoder",
    "NeighbourReadout",
    "CompactNeighbourReadout",
]
