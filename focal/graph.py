"""The pool as a graph: one node per model, one edge per pair weighted by its diversity.

Built with networkx; export to GraphML or node-link JSON, draw with matplotlib.

Example:
    >>> import ensembles
    >>> from focal import graph
    >>> b = ensembles.Bundle.create(models=["a", "b", "c"], labels=[0, 0, 0, 0],
    ...                             preds=[[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 1, 0]])
    >>> g = graph.pool_graph(b)
    >>> sorted(g.nodes), g.number_of_edges()
    (['a', 'b', 'c'], 3)
"""

from ._graph import GRAPH_FORMATS as GRAPH_FORMATS
from ._graph import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from ._graph import LAYOUTS as LAYOUTS
from ._graph import draw_graph as draw_graph
from ._graph import graph_format as graph_format
from ._graph import graph_layout as graph_layout
from ._graph import partners as partners
from ._graph import pool_graph as pool_graph
from ._graph import read_graph as read_graph
from ._graph import to_json as to_json
from ._graph import write_graph as write_graph

__all__ = [
    "GRAPH_FORMATS",
    "IMAGE_SUFFIXES",
    "LAYOUTS",
    "draw_graph",
    "graph_format",
    "graph_layout",
    "partners",
    "pool_graph",
    "read_graph",
    "to_json",
    "write_graph",
]
