"""Config sections by component (issue 31 item 4): each option in its component's section,
validated by that component's model; the old layout refused option by option with its new
place; stored configs of the old layout upgraded and computing as before."""

from __future__ import annotations

import glob
import json
import os
import pathlib
import shutil

import pydantic
import pytest

from agentgraph import AgentGraphError
from agentgraph import checkpoint as ckpt
from agentgraph.meta import config_upgrade
from agentgraph.meta.config import MOVED, MLPNetConfig, TrainConfig, apply_overrides, parse_config, upgrade_config
from agentgraph.meta.net_config import NET_MODELS, BuilderNetConfig, RandomDagNetConfig
from agentgraph.meta.objectives import OBJECTIVES, HintCVSettings, ObjectiveSettings, make_objective
from agentgraph.meta.tasks import NET_NEEDS, TASKS, NetNeeds, register_task, sinusoid_family

ROOT = pathlib.Path(__file__).resolve().parents[2]
DATA = pathlib.Path(__file__).resolve().parent / "data"
SINE = {"data": {"task": "sinusoid"}, "net": {"sizes": [1, 4, 1], "loss": "l2"}}

#: A value for each moved option, as a user of the old layout wrote it.
OLD_VALUES = {"meta.hint_weight": 0.5, "meta.cv_weight": 0.5, "meta.graph_pool": 2, "meta.curriculum": [[0, 2]],
              "meta.truncation": 2, "meta.meta_lr_schedule": [[0, 1e-3]], "data.sequence": 2}


# -- the old layout, written by a user ------------------------------------------------------------
@pytest.mark.parametrize("old", sorted(MOVED))
def test_each_moved_option_is_refused_with_its_new_place(old):
    section, key = old.split(".")
    with pytest.raises(AgentGraphError, match=rf"{old} moved: write it as {MOVED[old]}") as e:
        parse_config({section: {key: OLD_VALUES[old]}})
    assert str(e.value).count("moved") == 1


def test_every_moved_option_is_named_at_once_also_through_set():
    data = apply_overrides({"meta": {"hint_weight": 0.5}}, {"meta.curriculum": [[0, 2]], "data.sequence": 2})
    with pytest.raises(AgentGraphError) as e:
        parse_config(data)
    lines = str(e.value).splitlines()[1:]
    assert [ln.split(" moved")[0].strip() for ln in lines] == ["meta.hint_weight", "meta.curriculum", "data.sequence"]


@pytest.mark.parametrize("net, named", [
    ({"kind": "mlp", "n_hidden": 3}, r"net\.n_hidden is a setting of net\.kind 'random_dag', not of 'mlp'"),
    ({"edge_prob": 0.3}, r"net\.edge_prob is a setting of net\.kind 'random_dag', not of 'mlp'"),
    ({"kind": "mlp", "pool": 2}, r"net\.pool is a setting of net\.kind 'random_dag' or .*your builder.*not of 'mlp'"),
    ({"kind": "random_dag", "args": {"a": 1}}, r"net\.args is a setting of .*your builder.*not of 'random_dag'"),
    ({"kind": "pkg.mod:fn", "sizes": [4, 2]}, r"net\.sizes is a setting of net\.kind 'mlp' or 'random_dag'"),
])
def test_a_setting_of_another_net_kind_names_the_kind_it_belongs_to(net, named):
    with pytest.raises(AgentGraphError, match=named):
        parse_config({"net": net})


def test_the_net_section_is_a_tagged_union_on_kind():
    assert type(parse_config({}).net) is MLPNetConfig
    dag = parse_config({"net": {"kind": "random_dag", "sizes": [64, 10], "n_hidden": 3, "pool": 2},
                        "data": {"task": "digits", "image_size": 8}}).net
    assert type(dag) is RandomDagNetConfig and dag.library and dag.graphs == 2
    own = parse_config({"net": {"kind": "agentgraph.builders:mlp_network", "args": {"sizes": [64, 10]}}}).net
    assert type(own) is BuilderNetConfig and not own.library and own.graphs == 1
    assert own.build(0).graph.number_of_agents() == MLPNetConfig(sizes=[64, 10]).build(0).graph.number_of_agents()
    with pytest.raises(AgentGraphError, match=r"net\.n_hidden: Input should be greater than or equal to 0"):
        parse_config({"net": {"kind": "random_dag", "n_hidden": -1}})
    with pytest.raises(AgentGraphError, match=r"net: kind 'nope' is neither"):
        parse_config({"net": {"kind": "nope"}})
    # the stored config keeps the kind's fields only, and reads back to the same model
    dumped = parse_config({"net": {"kind": "random_dag"}}).model_dump(mode="json")
    assert sorted(dumped["net"]) == sorted(RandomDagNetConfig.model_fields)
    assert parse_config(dumped).net == parse_config({"net": {"kind": "random_dag"}}).net


def test_a_new_net_kind_is_a_model_and_a_table_entry(monkeypatch):
    """How the cnn builder will be added: a NetConfig subclass with a build, one NET_MODELS entry."""

    class WideNet(MLPNetConfig):
        kind: str = "wide"
        width: pydantic.PositiveInt = 3

        def build(self, seed=0):
            return MLPNetConfig(sizes=[self.sizes[0], self.width, self.sizes[-1]]).build(seed)

    monkeypatch.setitem(NET_MODELS, "wide", WideNet)
    cfg = parse_config({"net": {"kind": "wide", "sizes": [64, 10], "width": 5}, "data": {"task": "digits", "image_size": 8}})
    assert cfg.net.library and cfg.net.width == 5
    assert len(cfg.net.build().graph.agents("synapse")) == 64 * 5 + 5 * 10
    with pytest.raises(AgentGraphError, match=r"net\.width is a setting of net\.kind 'wide', not of 'mlp'"):
        parse_config({"net": {"width": 5}})


# -- meta.objective --------------------------------------------------------------------------------
def test_the_objective_is_a_section_and_a_bare_name_is_shorthand():
    short = parse_config({"meta": {"objective": "heldout"}}).meta.objective
    assert short == parse_config({"meta": {"objective": {"kind": "heldout"}}}).meta.objective
    assert type(short) is ObjectiveSettings and short.kind == "heldout"
    default = parse_config({}).meta.objective
    assert type(default) is HintCVSettings and (default.hint_weight, default.cv_weight) == (0.7, 0.3)
    assert parse_config({"meta": {"objective": {"hint_weight": 0.2}}}).meta.objective.kind == "hint_cv"
    assert parse_config(apply_overrides({}, {"meta.objective.cv_weight": 0.9})).meta.objective.cv_weight == 0.9
    dumped = parse_config({"meta": {"objective": {"kind": "hint_cv", "hint_weight": 0.0, "cv_weight": 1.0}}}).model_dump(mode="json")
    assert dumped["meta"]["objective"] == {"kind": "hint_cv", "hint_weight": 0.0, "cv_weight": 1.0}
    assert parse_config(dumped).meta.objective.cv_weight == 1.0


@pytest.mark.parametrize("objective, named", [
    ({"kind": "heldout", "hint_weight": 0.5}, r"meta\.objective\.hint_weight is a setting of objective 'hint_cv', not of 'heldout'"),
    ({"kind": "hint_cv", "hint_weight": 0.0, "cv_weight": 0.0}, r"meta\.objective: hint_weight \+ cv_weight must be positive"),
    ({"kind": "hint_cv", "cv_weight": -1}, r"meta\.objective\.cv_weight: Input should be greater than or equal to 0"),
    ("nope", r"meta\.objective: objective 'nope' is not one of \['continual', 'heldout', 'hint_cv'"),
])
def test_objective_settings_are_validated_by_the_objectives_model(objective, named):
    with pytest.raises(AgentGraphError, match=named):
        parse_config({"meta": {"objective": objective}})


def test_every_objective_declares_its_settings_model_and_builds():
    for name, spec in OBJECTIVES.items():
        assert issubclass(spec.settings, ObjectiveSettings), name
        settings = parse_config({"meta": {"objective": name}}).meta.objective
        assert type(settings) is spec.settings
        obj = make_objective(settings)
        assert obj is not None and callable(obj.final)
        assert (make_objective(name).per_step is None) == (obj.per_step is None)  # old call forms still work
        assert (make_objective(parse_config({"meta": {"objective": name}}).meta).per_step is None) == (obj.per_step is None)


# -- schedules -------------------------------------------------------------------------------------
def test_schedules_move_out_of_meta_with_their_methods():
    s = parse_config({"meta": {"inner_steps": 5}, "schedules": {"unroll": [[0, 2], [3, 4], [5, 5]]}}).schedules
    assert [s.unroll_at(t, 5) for t in range(7)] == [2, 2, 2, 4, 4, 5, 5]
    lr = parse_config({"schedules": {"meta_lr": [[0, 1e-3], [100, 1e-3], [200, 1e-5]]}}).schedules
    assert lr.lr_at(150, 5e-4) == pytest.approx(5.05e-4) and parse_config({}).schedules.lr_at(150, 5e-4) == 5e-4
    for bad, named in (
        ({"unroll": [[1, 2]]}, r"schedules\.unroll must start at meta-step 0"),
        ({"meta_lr": [[0, 1e-3], [0, 1e-4]]}, r"schedules\.meta_lr must start at meta-step 0 with strictly increasing"),
        ({"unroll": [[0, 9]]}, r"schedules\.unroll inner steps must not exceed inner_steps \(meta\.inner_steps = 5\)"),
        ({"truncation": 6}, r"schedules\.truncation \(6\) must not exceed inner_steps"),
        ({"unroll": [[0, 2]], "truncation": 2}, r"schedules\.unroll and schedules\.truncation cannot be combined"),
    ):
        with pytest.raises(AgentGraphError, match=named):
            parse_config({"meta": {"inner_steps": 5}, "schedules": bad})
    with pytest.raises(AgentGraphError, match=r"schedules\.meta_lr sets the gradient meta-optimiser's rate"):
        parse_config({"meta": {"optimizer": {"kind": "es"}}, "schedules": {"meta_lr": [[0, 1e-3]]}})


# -- what a task needs of the network: a table ----------------------------------------------------
def test_every_registered_task_with_needs_is_in_the_table():
    assert set(NET_NEEDS) <= set(TASKS)
    assert NET_NEEDS["sinusoid"] == NetNeeds(n_in=1, n_out=1, loss="l2", sequences=False, reads=())
    assert all(NET_NEEDS[t].image_inputs for t in ("mnist", "digits", "fashion_mnist", "idx", "npz"))


@pytest.mark.parametrize("cfg, named", [
    ({**SINE, "net": {"sizes": [2, 4, 1], "loss": "l2"}}, r"data\.task 'sinusoid' needs net\.sizes to start with 1"),
    ({**SINE, "net": {"sizes": [1, 4, 3], "loss": "l2"}}, r"data\.task 'sinusoid' needs net\.sizes to end with 1"),
    ({**SINE, "net": {"sizes": [1, 4, 1]}}, r"data\.task 'sinusoid' is a regression: set net\.loss to the squared error 'l2'"),
    ({**SINE, "data": {"task": "sinusoid", "cv_batch": 4, "continual": {"tasks": 2}}, "meta": {"inner_steps": 4}},
     r"data\.continual\.tasks 2 \(permuted-task sequences\) needs an image task, not 'sinusoid'"),
    ({"data": {"task": "digits", "image_size": 8}, "net": {"sizes": [60, 10]}}, r"net\.sizes\[0\] is 60 but data\.image_size 8 gives 64"),
    ({"data": {"task": "digits", "image_size": 8, "path": "mine.npz"}, "net": {"sizes": [64, 10]}},
     r"data\.path is 'mine\.npz', but data\.task 'digits' does not read it"),
    ({**SINE, "data": {"task": "sinusoid", "image_size": 8}}, r"data\.image_size is 8, but data\.task 'sinusoid' does not read it"),
    ({"data": {"task": "digits", "image_size": 8, "continual": {"tasks": 4}}, "net": {"sizes": [64, 10]}, "meta": {"inner_steps": 10}},
     r"data\.continual\.tasks 4 must divide meta\.inner_steps \(10\)"),
])
def test_task_checks_read_the_table(cfg, named):
    with pytest.raises(AgentGraphError, match=named):
        parse_config(cfg)


def test_a_registered_tasks_needs_are_checked_and_a_builder_net_is_not_sized():
    register_task("my_sine", sinusoid_family, NetNeeds(n_in=1, n_out=1, loss="l2"))
    try:
        with pytest.raises(AgentGraphError, match=r"data\.task 'my_sine' needs net\.sizes to start with 1"):
            parse_config({"data": {"task": "my_sine"}, "net": {"sizes": [3, 1], "loss": "l2"}})
        assert parse_config({"data": {"task": "my_sine"}, "net": {"sizes": [1, 1], "loss": "l2"}}).data.task == "my_sine"
        register_task("my_sine", sinusoid_family)  # no needs: nothing checked
        assert parse_config({"data": {"task": "my_sine"}, "net": {"sizes": [3, 1]}}).net.sizes == [3, 1]
    finally:
        TASKS.pop("my_sine", None)
        NET_NEEDS.pop("my_sine", None)
    own = {"kind": "agentgraph.builders:mlp_network", "args": {"sizes": [1, 3, 1], "loss": "l2"}}
    assert not parse_config({"data": {"task": "sinusoid"}, "net": own}).net.library


# -- stored configs of the old layout -------------------------------------------------------------
def _stored(name: str) -> dict:
    return ckpt.load(str(DATA / f"{name}.npz"))[1]["config"]


def test_upgrade_config_maps_an_old_stored_config_onto_the_sections_a_user_writes_now():
    old = _stored("old_layout_mplp")
    assert {"hint_weight", "cv_weight", "curriculum", "meta_lr_schedule", "graph_pool", "truncation"} <= set(old["meta"])
    new = upgrade_config(old)
    assert old["meta"]["hint_weight"] == 0.6 and "hint_weight" not in new["meta"]
    by_hand = {  # what the same run is written as today
        "net": {"sizes": [64, 10], "activation": "sigmoid", "loss": "cross_entropy"},
        "data": {"task": "digits", "image_size": 8, "cv_batch": 20},
        "protocol": {"rule": "mplp", "k": 2, "hidden": 2, "mlp": [6], "sharing": "kind", "calibration_rounds": 1},
        "meta": {"inner_steps": 4, "batch": 4, "meta_steps": 4, "meta_lr": 1e-3, "prior_pool": 2,
                 "objective": {"kind": "hint_cv", "hint_weight": 0.6, "cv_weight": 0.5}},
        "schedules": {"unroll": [[0, 2], [3, 4]], "meta_lr": [[0, 2e-3], [3, 1e-3]]},
        "run": {"seed": 1, "checkpoint_every": 2, "out_dir": old["run"]["out_dir"]},
    }
    assert parse_config(new) == parse_config(by_hand)
    dag = parse_config(upgrade_config(_stored("old_layout_dag")))
    assert (dag.net.pool, dag.net.n_hidden, dag.net.edge_prob, dag.net.parallel_prob) == (2, 3, 0.4, 0.1)
    assert (dag.data.continual.tasks, dag.schedules.truncation, dag.meta.objective.kind) == (2, 2, "continual")


def test_upgrade_config_is_idempotent_and_leaves_todays_layout_alone():
    for name in ("old_layout_mplp", "old_layout_dag"):
        once = upgrade_config(_stored(name))
        assert upgrade_config(once) == once
        today = parse_config(once).model_dump(mode="json")
        assert upgrade_config(today) == today
        assert parse_config(today) == parse_config(once)
    assert config_upgrade.moved_messages(upgrade_config(_stored("old_layout_mplp"))) == []


def _stored_protocols() -> list[str]:
    return sorted(glob.glob(str(ROOT / "agentgraph" / "pretrained" / "*.npz"))
                  + glob.glob(str(ROOT / "benchmarks" / "results" / "protocols" / "**" / "*.npz"), recursive=True))


@pytest.mark.parametrize("path", _stored_protocols(), ids=lambda p: os.path.relpath(p, ROOT))
def test_every_shipped_protocol_loads(path):
    from agentgraph.meta.context import make_context
    from agentgraph.meta.protocol_io import checkpoint_config, load_prior, load_protocol

    pytest.importorskip("sklearn")
    cfg = checkpoint_config(path)
    assert isinstance(cfg, TrainConfig)
    data = cfg.model_dump(mode="json")
    if data["data"]["task"] not in ("digits", "sinusoid"):  # build the network on data every install has
        data["data"].update(task="digits", path=None)
    ctx = make_context(parse_config(data))
    learned, stats = load_protocol(path, ctx)
    assert learned is not None and stats is not None
    if cfg.meta.maml:
        assert load_prior(path, ctx) is not None


@pytest.fixture(scope="module")
def expected():
    return json.loads((DATA / "old_layout_expected.json").read_text())


@pytest.mark.parametrize("name", ["old_layout_mplp", "old_layout_dag"])
def test_an_old_layout_checkpoint_resumes_and_evaluates_as_the_old_code_did(name, expected, tmp_path):
    """The checkpoints in tests/meta/data were written by the code before this change after 2 of 4
    meta-steps; resuming them must give the old code's uninterrupted meta-losses for steps 2 and
    3, and evaluating them its evaluation curve."""
    from helpers import _metrics

    from agentgraph.meta.checkpoints import evaluate_checkpoint
    from agentgraph.meta.protocol_io import checkpoint_config
    from agentgraph.meta.train import train

    pytest.importorskip("sklearn")
    want = expected[name]
    src = DATA / f"{name}.npz"
    ev = evaluate_checkpoint(str(src), runs=2, sgd_lr=0.1, adam_lr=0.01, log=lambda s: None)
    assert ev["protocol"]["mean"] == pytest.approx(want["eval_protocol_mean"], rel=1e-6, abs=1e-7)
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(src, run / f"ckpt_{want['checkpoint_step']:08d}.npz")
    cfg = parse_config({**checkpoint_config(str(src)).model_dump(mode="json"), "run": {
        **checkpoint_config(str(src)).run.model_dump(mode="json"), "out_dir": str(run)}})
    res = train(cfg, resume=True, progress=False, log=lambda s: None)
    assert res["steps"] == 4 - (want["checkpoint_step"] + 1)
    got = [r["meta_loss"] for r in _metrics(str(run))]
    assert got == pytest.approx(want["meta_loss"][want["checkpoint_step"] + 1:], rel=1e-5)
