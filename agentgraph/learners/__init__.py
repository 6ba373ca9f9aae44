"""Learners: the small networks that run on the arrows of learned protocols (MPLP's GRU and MLP,
VSML's LSTM)."""

from agentgraph.learners.gru import gru_cell, gru_input_layer, gru_step, init_gru
from agentgraph.learners.lstm import init_lstm, lstm_step
from agentgraph.learners.mlp import ACTS, apply_mlp, apply_mlp_from_pre, first_layer, init_mlp

__all__ = ["ACTS", "apply_mlp", "apply_mlp_from_pre", "first_layer", "gru_cell", "gru_input_layer", "gru_step",
           "init_gru", "init_lstm", "init_mlp", "lstm_step"]
