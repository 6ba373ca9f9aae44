"""The verification figures of docs/local_rules.md for feedback alignment, sign symmetry, DFA,
Hebbian/Oja and node perturbation (float64): each rule's one-step deviation from backprop where
its theory says it equals it, and compiled vs interpreter over two steps on mlp, random_dag and
cnn. The tests (tests/protocols/test_feedback_rules.py, test_hebbian.py, test_perturbation.py)
assert the bounds; this prints the numbers.

Run from the repository root:  nice -n 10 python benchmarks/local_rules_verification.py
"""

from __future__ import annotations

import sys

sys.path.insert(0, ".")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from agentgraph import interpreter  # noqa: E402
from agentgraph.builders import Conv, Pool, as_network, cnn, mlp_network, random_dag_network  # noqa: E402
from agentgraph.protocols.base import resolve  # noqa: E402
from agentgraph.testing import compare  # noqa: E402
from tests.protocols import test_feedback_rules as T  # noqa: E402


def _neg_b(g, st, rng):
    for a in g.agents("synapse"):
        st[a]["b"] = -np.asarray(st[a]["w"])


def vs_backprop() -> None:
    for rule, name, fb, kw in [("feedback_alignment", "mlp", T._b_is_w, {}),
                               ("feedback_alignment", "random_dag", T._b_is_w, {}),
                               ("sign_symmetry", "mlp", _neg_b, {"magnitude": "random"}),
                               ("sign_symmetry", "random_dag", _neg_b, {"magnitude": "random"}),
                               ("direct_feedback_alignment", "mlp1", T._b_output_weights, {}),
                               ("direct_feedback_alignment", "mlp1_ce", T._b_output_weights, {}),
                               ("feedback_alignment", "mlp", T._b_random, {}),
                               ("sign_symmetry", "mlp", lambda *a: None, {})]:
        bp, comp = T._vs_backprop(rule, name, fb, **kw)
        print(f"{rule} {name} {kw}: vs backprop {bp:.2e}, compiled vs interpreter {comp:.2e}", flush=True)


def compiled_vs_interpreter() -> None:
    nets = {"mlp": (mlp_network([3, 4, 2], activation="tanh", init_std=0.8), 3, 2),
            "random_dag": (random_dag_network(3, 5, 2, edge_prob=0.5, parallel_prob=0.3, activation="tanh", seed=2), 3, 2),
            "cnn": (as_network(cnn((1, 5, 5), [Conv(2, 3, 1, 1), Pool(2, mode="max"), Conv(2, 2)], 3, "relu", "cross_entropy", init_std=0.3), 0.3), 25, 3)}
    rules = [{"rule": "feedback_alignment"}, {"rule": "sign_symmetry"}, {"rule": "sign_symmetry", "magnitude": "random"},
             {"rule": "direct_feedback_alignment"}, {"rule": "hebbian", "A": 0.5, "B": 0.2, "C": -0.3, "D": 0.1}, {"rule": "hebbian", "form": "oja"},
             {"rule": "node_perturbation", "sigma": 0.1}]
    for sec in rules:
        row = []
        for name, (net, n_in, n_out) in nets.items():
            p = resolve(sec); pn = p.network(net); g = pn.graph
            rng = np.random.default_rng(0)
            st = interpreter.init_state(g, 3)
            for fi in pn.init:
                for a in g.agents(fi.kind):
                    st[a][fi.field] = np.asarray(rng.normal(0, 0.3, np.shape(st[a][fi.field])))
            t = g.ties(); names = g.arrays().names
            for i, f in enumerate(t.fields):
                v = st[names[t.members(i)[0]]][f]
                for m in t.members(i): st[names[m]][f] = v
            if "bias" in g.kinds and "xi" in g.kinds["bias"].fields:
                for a in g.agents("bias"): st[a]["xi"] = rng.normal(size=3)
            params = jax.tree.map(lambda v: np.asarray(v, np.float64), p.params(p.init(None, g), {}, g))
            batches = [{"x": rng.normal(size=(3, n_in)), "y": np.eye(n_out)[[0, 1, 1]]} for _ in range(2)]
            row.append(f"{name} {compare(g, params, batches, state=st).worst:.1e}")
        print(sec, " | ".join(row), flush=True)


if __name__ == "__main__":
    vs_backprop()
    compiled_vs_interpreter()
