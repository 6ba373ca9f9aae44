"""Meta-training learned protocols, for any protocol: configs, the context (network + protocol,
compiled), tasks, objectives, the inner loop, training and evaluation (checkpoint files:
:mod:`agentgraph.checkpoint`) (see
docs/meta.md and docs/protocols.md). Nothing here names a kind or asks which protocol it runs."""

from agentgraph.meta.config import TrainConfig, load_config, parse_config
from agentgraph.meta.context import Context, make_context
from agentgraph.meta.evaluate import evaluate
from agentgraph.meta.objectives import Objective
from agentgraph.meta.protocol_io import load_protocol
from agentgraph.meta.tasks import TaskFamily
from agentgraph.meta.train import TrainState, train

__all__ = ["Context", "Objective", "TaskFamily", "TrainConfig", "TrainState", "evaluate", "load_config",
           "load_protocol", "make_context", "parse_config", "train"]
