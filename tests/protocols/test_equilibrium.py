"""Equilibrium propagation against its theory, float64, interpreter and compiled
(``agentgraph/protocols/equilibrium.py``, ``docs/local_rules.md``): the contrastive update divided
by ``lr`` tends to ``−dL/dθ`` as ``β → 0``, where ``L`` is the loss at the free fixed point and the
gradient is ``jax.grad`` through the relaxation unrolled to its fixed point (recurrent backprop),
written here independently from the library graph's arrows; the one-sided estimate's deviation
shrinks like ``β``, the centred one's like ``β²``. Compiled == interpreter on ``mlp``,
``random_dag`` and a ``cnn``, with and without an average pool (tied kernels: a kernel entry
moves by the sum of its uses' updates, which tends to ``−dL/dw`` of the shared weight).
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agentgraph import AgentGraphError, compile, interpreter
from agentgraph.builders import Conv, Pool, as_network, cnn, mlp_network, random_dag_network
from agentgraph.protocols.base import resolve
from agentgraph.protocols.equilibrium import equilibrium
from agentgraph.testing import compare


def fixed_point_gradient(lib, state: dict, batch: dict, gamma: float = 0.5, ticks: int = 300, out_rho=None):
    """``(L, {agent: {"w" or "b": dL/dθ}})``: the free fixed point of the symmetric network of a
    library graph ``lib`` (a ``Network``; ``u_j = ∂H/∂ρ_j + b_j`` with the coupling
    ``H = Σ_s w_s a_s(ρ, x) ρ_post(s)``, ``a_s`` the synapse's input activity — a unit's ``ρ``, an
    input, or an average pool's mean of its window's — outputs linear (or of activity ``out_rho``),
    inputs clamped; a synapse whose arrow into its unit is doubled counts twice) reached by
    ``ticks`` damped iterations from 0, its loss ``½ Σ_out (ρ_out(u) − y)²`` (batch mean) and
    ``jax.grad`` of it."""
    A = lib.graph.arrays()
    names, kind = A.names, np.array(A.kind_names, dtype=object)[A.kind]
    fwd = A.type_mask("forward")
    units = [i for i in range(len(names)) if kind[i] == "bias"]
    col = {u: k for k, u in enumerate(units)}
    unit_of_act = {int(d): int(s) for s, d in zip(A.src[fwd], A.dst[fwd]) if kind[s] == "bias" and kind[d] != "l2"}
    fn = {col[u]: lib.graph.kinds[kind[a]].fn for a, u in unit_of_act.items()}
    syn = [i for i in range(len(names)) if kind[i] == "synapse"]
    pre, post, mult, window = {}, {}, {}, {}
    for s, d in zip(A.src[fwd].tolist(), A.dst[fwd].tolist()):
        if kind[d] == "synapse":
            pre[d] = s
        if kind[s] == "synapse" and kind[d] == "bias":
            post[s], mult[s] = d, mult.get(s, 0) + 1
        if kind[d] == "avg_pool":
            window.setdefault(d, []).append(s)
    n_x = int(A.slot[[i for i in range(len(names)) if kind[i] == "input"]].max()) + 1

    def activity(a) -> np.ndarray:  # a source's activity as coefficients over [x, ρ]
        c = np.zeros(n_x + len(units))
        if kind[a] == "input":
            c[A.slot[a]] = 1.0
        elif kind[a] == "avg_pool":
            c = sum(activity(m) for m in window[a]) / len(window[a])
        else:
            c[n_x + col[unit_of_act[a]]] = 1.0
        return c

    port = np.array(A.strings, dtype=object)[A.port]
    outs = []
    for l in (i for i in range(len(names)) if kind[i] == "l2"):
        into = {port[e]: int(A.src[e]) for e in np.flatnonzero(fwd & (A.dst == l))}
        outs.append((col[into["pred"]], int(A.slot[into["target"]])))
    j_of = np.array([col[post[s]] for s in syn])
    m_of = np.array([mult[s] for s in syn], np.float64)
    C = np.stack([activity(pre[s]) for s in syn])                              # [S, X + U]
    hidden = np.array([k in fn for k in range(len(units))])
    assert len(set(fn.values())) <= 1, "one activation"
    rho = next(iter(fn.values()), None)
    o_col, o_slot = np.array([k for k, _ in outs]), np.array([t for _, t in outs])
    out = out_rho or (lambda u: u)

    @jax.jit
    def loss(w, b):
        W = w * m_of

        def tick(_, u):
            r = jnp.where(hidden, rho(u), out(u)) if rho is not None else out(u)
            below = jnp.concatenate([x, r], 1) @ C.T                           # [B, S]
            d = (b[None] + jnp.zeros_like(u)).at[:, j_of].add(W * below)
            d = d + (W * r[:, j_of]) @ C[:, n_x:]
            return u + gamma * (d - u)

        u = jax.lax.fori_loop(0, ticks, tick, jnp.zeros((x.shape[0], len(units))))
        return jnp.mean(jnp.sum(0.5 * (out(u[:, o_col]) - y[:, o_slot]) ** 2, 1))

    with jax.enable_x64(True):
        x, y = jnp.asarray(batch["x"]), jnp.asarray(batch["y"])
        w0 = jnp.array([state[names[s]]["w"] for s in syn])
        b0 = jnp.array([state[names[u]]["b"] for u in units])
        L, (gw, gb) = jax.value_and_grad(loss, argnums=(0, 1))(w0, b0)
    grads = {names[s]: {"w": float(gw[k])} for k, s in enumerate(syn)}
    grads.update({names[u]: {"b": float(gb[k])} for k, u in enumerate(units)})
    return float(L), grads


def _batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(2, 3)), "y": rng.normal(size=(2, 2))}


def ep_deviation(lib, beta: float, nudge: str, T: int, gamma: float, batch: dict, reference,
                 output_activation: str | None = None) -> tuple[float, float]:
    """(the step's loss, ``‖Δθ/lr + dL/dθ‖ / ‖dL/dθ‖``) of one interpreted EP step (lr = 1)."""
    p = equilibrium(T=T, K=T, beta=beta, gamma=gamma, lr=1.0, nudge=nudge, output_activation=output_activation)
    g = p.network(lib).graph
    s0 = interpreter.init_state(g, 2)
    r = interpreter.step(g, s0, jax.tree.map(float, p.params(p.init(None, g), {}, g)), batch)
    num = den = 0.0
    for a, fields in reference.items():
        for f, grad in fields.items():
            num, den = num + (r.state[a][f] - s0[a][f] + grad) ** 2, den + grad**2
    return float(r.loss), float(np.sqrt(num / den))


def test_update_tends_to_the_loss_gradient_as_beta_shrinks():
    lib, b = mlp_network([3, 4, 2], activation="tanh", loss="l2", init_std=0.1, seed=0), _batch()
    L, ref = fixed_point_gradient(lib, interpreter.init_state(lib.graph, 2), b)
    loss1, d1 = ep_deviation(lib, 1e-1, "positive", 20, 0.8, b, ref)
    loss2, d2 = ep_deviation(lib, 1e-2, "positive", 20, 0.8, b, ref)
    assert abs(loss1 - L) < 1e-8 and loss1 == loss2           # the free phase reached the fixed point
    assert d2 < 0.03 and d2 < 0.2 * d1, (d1, d2)               # O(β): measured 0.16, 0.019
    _, c2 = ep_deviation(lib, 1e-2, "centred", 20, 0.8, b, ref)
    assert c2 < 1e-3, c2                                       # O(β²): measured 3.8e-4


@pytest.mark.slow
@pytest.mark.parametrize("name,nudge", [("mlp", "positive"), ("mlp", "centred"), ("random_dag", "centred")])
def test_deviation_per_beta(name, nudge):
    """The table of docs/local_rules.md: β = 1e-1, 1e-2, 1e-3, relaxation to the fixed point."""
    lib = (mlp_network([3, 4, 2], activation="tanh", loss="l2", init_std=0.5, seed=0) if name == "mlp"
           else random_dag_network(3, 5, 2, seed=1, init_std=0.5))
    b = _batch()
    _, ref = fixed_point_gradient(lib, interpreter.init_state(lib.graph, 2), b)
    dev = [ep_deviation(lib, beta, nudge, 150, 0.5, b, ref)[1] for beta in (1e-1, 1e-2, 1e-3)]
    print(name, nudge, dev)
    order = 2 if nudge == "centred" else 1
    for big, small in itertools.pairwise(dev):
        assert small < 0.2 ** order * big, dev                 # measured ratios ≈ 10 (β) and 100 (β²)


@pytest.mark.slow
@pytest.mark.parametrize("name,nudge", [("mlp", "positive"), ("random_dag", "centred")])
def test_compiled_matches_interpreter(name, nudge):
    lib = (mlp_network([3, 4, 2], activation="tanh", loss="l2", init_std=0.5, seed=0) if name == "mlp"
           else random_dag_network(3, 5, 2, seed=1, init_std=0.5))
    p = equilibrium(T=3, K=2, beta=0.1, gamma=0.5, lr=0.1, nudge=nudge)
    g = p.network(lib).graph
    c = compare(g, p.params(p.init(None, g), {}, g), [_batch(), _batch(1)])
    assert c.worst < 1e-10, c


def test_relaxation_ticks_are_matrix_products():
    """On ``ep`` a dense synapse layer only sends ``w·ρ`` both ways (declared Linear): every unit
    port that reads synapses is a ``matmul``, the synapses' own outputs are never computed and
    they keep no per-example state (the products are formed on ``ep_learn`` only)."""
    p = equilibrium(T=2, K=1)
    g = p.network(mlp_network([6, 5, 3], activation="tanh", loss="l2")).graph
    plan = compile(g).plan
    blocks = [b for w in plan.waves("ep") for b in w]
    unit_ports = [q.lowering for b in blocks if b.kind == "bias" for q in b.ports if q.port in ("x", "m") and q.n_edges]
    assert unit_ports == ["matmul"] * 3, unit_ports            # hidden: from below and above; output: below
    assert all(b.dropped == ("back", "out") for b in blocks if b.kind == "synapse")
    assert not [f for f, spec in g.kinds["synapse"].fields.items() if spec.per_example and not spec.scratch]
    assert not g.arrays().delay.any()                          # delayed arrows would disable the fusion


def _tiny_cnn():
    """conv 1×2×2 on a 3×3 image (4 uses per kernel entry) into a dense L2 head of 2."""
    return as_network(cnn((1, 3, 3), [Conv(1, 2)], 2, "tanh", "l2", init_std=0.5), 0.5)


def _cnn_batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(2, 9)), "y": rng.normal(size=(2, 2))}


def test_cnn_compiled_matches_interpreter():
    lib = _tiny_cnn()
    p = equilibrium(T=1, K=1, beta=0.1, gamma=0.5, lr=0.1, nudge="centred")
    g = p.network(lib).graph
    assert len(g.ties()) == len(lib.graph.ties()) == 5  # 4 kernel entries and the channel's bias
    c = compare(g, p.params(p.init(None, g), {}, g), [_cnn_batch(), _cnn_batch(1)])
    assert c.worst < 1e-10, c


def _pooled_cnn():
    """conv 1×2×2 on a 4×4 image, an overlapping 2×2 average pool (stride 1: a 3×3 map to 2×2),
    a dense L2 head of 2."""
    return as_network(cnn((1, 4, 4), [Conv(1, 2), Pool(2, stride=1)], 2, "tanh", "l2", init_std=0.5), 0.5)


def test_average_pool_compiled_matches_interpreter():
    """An average pool is a fixed linear coupling: up, the window's mean activity; down, ``m / n``
    to each unit of the window (its ``ep_pool_down`` agent)."""
    p = equilibrium(T=1, K=1, beta=0.1, gamma=0.5, lr=0.1, nudge="centred")
    g = p.network(_pooled_cnn()).graph
    kinds = [g.kind_of(a).name for a in g.agents()]
    assert kinds.count("ep_pool_down") == kinds.count("avg_pool") == 4
    rng = np.random.default_rng(0)
    batches = [{"x": rng.normal(size=(2, 16)), "y": rng.normal(size=(2, 2))} for _ in range(2)]
    c = compare(g, p.params(p.init(None, g), {}, g), batches)
    assert c.worst < 1e-10, c


@pytest.mark.slow
@pytest.mark.parametrize("pooled", [False, True])
def test_cnn_tied_update_tends_to_the_shared_weights_gradient(pooled):
    """A kernel entry (a tie of 4 or 9 synapses) moves by ``−lr Σ_uses dL/dw`` as ``β → 0``
    (centred), with and without an average pool above the convolution."""
    lib = _pooled_cnn() if pooled else _tiny_cnn()
    rng = np.random.default_rng(0)
    batch = {"x": rng.normal(size=(2, 16)), "y": rng.normal(size=(2, 2))} if pooled else _cnn_batch()
    s0 = interpreter.init_state(equilibrium().network(lib).graph, 2)
    L, grads = fixed_point_gradient(lib, s0, batch)
    dev = {}
    for beta in (1e-2, 1e-3):
        p = equilibrium(T=80, K=80, beta=beta, gamma=0.5, lr=1.0, nudge="centred")
        g = p.network(lib).graph
        r = interpreter.step(g, s0, jax.tree.map(float, p.params(p.init(None, g), {}, g)), batch)
        assert abs(r.loss - L) < 1e-4                          # 80 ticks: 1.2e-5 from the fixed point
        A, ties, num, den, tied = g.arrays(), g.ties(), 0.0, 0.0, set()
        for i, f in enumerate(ties.fields):
            uses = [A.names[k] for k in ties.members(i)]
            grad = sum(grads[a][f] for a in uses)
            tied |= set(uses)
            num, den = num + (float(r.state[uses[0]][f] - s0[uses[0]][f]) + grad) ** 2, den + grad**2
        for a in set(grads) - tied:
            for f, grad in grads[a].items():
                num, den = num + (float(r.state[a][f] - s0[a][f]) + grad) ** 2, den + grad**2
        dev[beta] = float(np.sqrt(num / den))
    assert dev[1e-2] < 1e-3 and dev[1e-3] < 0.2**2 * dev[1e-2], dev  # measured 1.1e-4, 9.0e-7 (pooled: 1.3e-4, 1.3e-6)


def test_settings_and_refusals():
    p = resolve({"rule": "equilibrium", "T": 2, "beta": 0.2, "nudge": "centred"})
    net = p.network(mlp_network([3, 2], loss="l2"))
    assert set(p.init(None, net.graph)) == {"log_beta", "log_gamma", "log_lr"}
    assert "ep_flip" in net.graph.schedule.types()
    with pytest.raises(AgentGraphError, match="L2 head"):
        p.network(mlp_network([3, 2], loss="cross_entropy"))
    with pytest.raises(AgentGraphError, match="max pooling"):
        p.network(as_network(cnn((1, 4, 4), [Conv(1, 2), Pool(2, mode="max")], 2, "tanh", "l2"), 0.1))
    only = resolve({"rule": "equilibrium", "beta": 0.2, "learn": ["lr"]})
    g = only.network(mlp_network([3, 2], loss="l2")).graph
    learned = only.init(None, g)
    assert set(learned) == {"log_lr"} and float(only.params(learned, {}, g)["synapse:0"]["beta"]) == 0.2
    bounded = resolve({"rule": "equilibrium", "lr": 0.2, "lr_max": 0.25})
    learned = bounded.init(None, g)
    assert float(bounded.params(learned, {}, g)["synapse:0"]["lr"]) == pytest.approx(0.2)  # starts at lr
    learned["logit_lr"]["synapse:0"] = learned["logit_lr"]["synapse:0"] + 1e3                # however far it moves
    assert float(bounded.params(learned, {}, g)["synapse:0"]["lr"]) <= 0.25
    for bad in ({"beta": 0.0}, {"nudge": "sideways"}, {"K": 0}, {"learn": []}, {"learn": ["lr", "lr"]},
                {"learn": ["sigma"]}, {"lr": 0.2, "lr_max": 0.2}):
        with pytest.raises(AgentGraphError):
            resolve({"rule": "equilibrium", **bad})


# -- output_activation: the output units' activity ρ_out (the authors' clipped output: hard_sigmoid) --------------

def _unit_batch(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"x": rng.normal(size=(2, 3)), "y": rng.uniform(size=(2, 2))}


@pytest.mark.parametrize("act", ["sigmoid", "hard_sigmoid"])
def test_output_activity_update_tends_to_the_loss_gradient(act):
    """With ``ρ_out`` on the outputs (cost ``½ Σ (ρ_out(u) − y)²``, nudge ``β (y − ρ_out(u))``) the
    update still tends to ``−dL/dθ`` of that loss, ``O(β)`` one-sided and ``O(β²)`` centred (hard
    sigmoid: no output sits on a kink at this fixed point, so the gradient exists there)."""
    from agentgraph.nodes import ACTIVATIONS
    lib, b = mlp_network([3, 4, 2], activation="tanh", loss="l2", init_std=0.5, seed=0), _unit_batch()
    L, ref = fixed_point_gradient(lib, interpreter.init_state(lib.graph, 2), b, out_rho=ACTIVATIONS[act][0])
    loss1, d1 = ep_deviation(lib, 1e-1, "positive", 40, 0.8, b, ref, act)
    loss2, d2 = ep_deviation(lib, 1e-2, "positive", 40, 0.8, b, ref, act)
    assert abs(loss1 - L) < 1e-6 and loss1 == loss2            # the loss is on ρ_out(u) at the free fixed point
    assert d2 < 0.03 and d2 < 0.2 * d1, (d1, d2)               # measured 0.022, 0.0023 (hard: 0.13, 0.014)
    _, c2 = ep_deviation(lib, 1e-2, "centred", 40, 0.8, b, ref, act)
    assert c2 < (1e-4 if act == "sigmoid" else 1e-3), c2       # measured 7.8e-6 (hard: 2.2e-4)


@pytest.mark.parametrize("act,nudge", [("hard_sigmoid", "positive"), ("hard_sigmoid", "centred"),
                                       ("sigmoid", "centred")])
def test_output_activity_compiled_matches_interpreter(act, nudge):
    lib = mlp_network([3, 4, 2], activation="hard_sigmoid", loss="l2", init_std=0.5, seed=0)
    p = equilibrium(T=3, K=2, beta=0.1, gamma=0.5, lr=0.1, nudge=nudge, output_activation=act)
    g = p.network(lib).graph
    c = compare(g, p.params(p.init(None, g), {}, g), [_unit_batch(), _unit_batch(1)])
    assert c.worst < 1e-10, c


def test_output_activity_identity_is_the_linear_output_and_hard_sigmoid_clips():
    """``output_activation: identity`` (the general path: bias moved by its activity agent's change)
    is the default's linear output; ``hard_sigmoid`` keeps the prediction in [0, 1] where the
    linear outputs of the same large weights leave it."""
    lib, b = mlp_network([3, 6, 2], activation="tanh", loss="l2", init_std=3.0, seed=0), _unit_batch()
    out = {}
    for act in (None, "identity", "hard_sigmoid"):
        p = equilibrium(T=6, K=3, beta=0.5, gamma=0.5, lr=0.1, nudge="centred", output_activation=act)
        g = p.network(lib).graph
        s0 = interpreter.init_state(g, 2)
        r = interpreter.step(g, s0, jax.tree.map(float, p.params(p.init(None, g), {}, g)), b)
        pred = np.array([[float(r.state[("loss", j)]["pred"][k]) for j in range(2)] for k in range(2)])
        out[act] = (r, pred, {a: r.state[a] for a in s0 if a[0] in ("w", "b")})
    (r0, p0, s0), (r1, p1, s1) = out[None], out["identity"]
    assert abs(r0.loss - r1.loss) < 1e-12 and np.abs(p0 - p1).max() < 1e-12
    assert max(float(np.max(np.abs(s0[a][f] - s1[a][f]))) for a in s0 for f in s0[a]) < 1e-12
    _, ph, _ = out["hard_sigmoid"]
    assert (p0 < 0).any() or (p0 > 1).any(), p0                # linear outputs leave [0, 1] here
    assert ((ph >= 0) & (ph <= 1)).all(), ph
    assert abs(out["hard_sigmoid"][0].loss - float(np.mean(np.sum(0.5 * (ph - b["y"]) ** 2, 1)))) < 1e-12


def test_output_activation_refusals():
    for bad in ("step", "softmax"):
        with pytest.raises(AgentGraphError, match="output_activation.*hard_sigmoid"):
            resolve({"rule": "equilibrium", "output_activation": bad})
    assert resolve({"rule": "equilibrium", "output_activation": "hard_sigmoid"}).settings["output_activation"] == \
        "hard_sigmoid"
    with pytest.raises(AgentGraphError, match="protocol's output_activation"):
        equilibrium(T=2).network(mlp_network([3, 4, 2], activation="tanh", loss="l2", output_activation="sigmoid"))
