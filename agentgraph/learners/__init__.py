"""Learners: the small networks that run on the arrows of learned protocols."""

from agentgraph.learners.gru import gru_step, init_gru
from agentgraph.learners.mlp import ACTS, apply_mlp, init_mlp

__all__ = ["ACTS", "apply_mlp", "gru_step", "init_gru", "init_mlp"]
