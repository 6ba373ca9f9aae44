"""Meta-training learned protocols: configs, tasks, inner loop, normalisation, training,
checkpoints and evaluation (see docs/meta.md)."""

from agentgraph.meta import checkpoint
from agentgraph.meta.config import TrainConfig, load_config, parse_config
from agentgraph.meta.evaluate import evaluate
from agentgraph.meta.protocol_io import load_protocol
from agentgraph.meta.setup import Setup, make_setup
from agentgraph.meta.train import train

__all__ = ["Setup", "TrainConfig", "checkpoint", "evaluate", "load_config", "load_protocol", "make_setup",
           "parse_config", "train"]
