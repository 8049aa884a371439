"""Conversation pathways: node text templates, edge conditions and the graph that joins them."""

from server.pathways.graph import PathwayGraph, Step

__all__ = ["PathwayGraph", "Step"]
