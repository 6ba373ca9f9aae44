"""Inputs that contradict each other or cannot work (issue 35), refused before compute with the
fields named: a resume with another meta-optimiser or schedule, ``init_from``/``eval`` with a
protocol of another rule, an ES ``sigma`` no generation can use, an ES population that cannot fit
in memory (estimated before compiling), multi-process flags without a coordinator or ``auto``
outside a cluster."""

from __future__ import annotations

import os

import pytest
from faults import probe, tiny, write_yaml

from agentgraph.cli import main
from agentgraph.meta.config import parse_config
from agentgraph.meta.train import train

ES = {"kind": "es", "strategy": "open_es", "popsize": 4}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("consistency") / "r"
    train(parse_config(tiny(d, **{"meta.meta_steps": 2})), progress=False, log=lambda s: None)
    return d


def _checkpoint(d) -> str:
    return str(sorted(p for p in d.iterdir() if p.suffix == ".npz")[-1])


@pytest.mark.parametrize("case, over, named", [
    ("resume with ES instead of gradient", {"meta.optimizer": ES}, r"meta\.optimizer\.kind: checkpoint 'gradient', now 'es'"),
    ("resume with a meta_lr schedule added", {"schedules.meta_lr": [[0, 0.01]]}, r"schedules\.meta_lr: checkpoint None"),
    ("resume with another protocol", {"protocol": {"rule": "sgd", "lr": 0.3}}, r"protocol\.lr: checkpoint 0\.1, now 0\.3"),
])
def test_resume_with_another_optimiser_schedule_or_protocol_is_refused(run_dir, case, over, named):
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.suffix == ".npz"}
    cfg = parse_config(tiny(run_dir, **{"meta.meta_steps": 4, **over}))
    probe("inconsistent input", case, lambda: train(cfg, resume=True, progress=False, log=lambda s: None), match=named)
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.suffix == ".npz"} == before


def test_resume_may_raise_the_phase_limit(run_dir, tmp_path):
    """``run.max_phase_runs`` guards compile size, it changes no number of the run: a resume may
    raise it (it is one of ``rundir.RESUMABLE``)."""
    import shutil

    d = tmp_path / "r"
    shutil.copytree(run_dir, d)
    cfg = parse_config(tiny(d, **{"meta.meta_steps": 3, "run.max_phase_runs": 1000}))
    res = train(cfg, resume=True, progress=False, log=lambda s: None)
    assert res["steps"] == 1


def test_init_from_and_eval_with_a_protocol_of_another_rule_are_refused(run_dir, tmp_path, capsys):
    ckpt = _checkpoint(run_dir)
    mplp = {"protocol": {"rule": "mplp", "calibration_rounds": 1}, "meta.maml": False}
    cfg = parse_config(tiny(tmp_path / "m", **mplp, **{"meta.init_from": ckpt}))
    probe("inconsistent input", "init_from a checkpoint of another rule",
          lambda: train(cfg, progress=False, log=lambda s: None),
          match=r"meta\.init_from: .* holds a protocol of rule 'sgd', but this config's protocol section has rule 'mplp'")

    def evaluate():
        rc = main(["eval", ckpt, "--config", write_yaml(tmp_path / "m.yaml", tiny(tmp_path / "m", **mplp)), "--runs",
                   "2", "--sgd-lr", "0.1", "--adam-lr", "0.01"])
        err = capsys.readouterr().err
        if rc == 2 and "Traceback" not in err:
            from agentgraph import AgentGraphError

            raise AgentGraphError(err)
        return rc

    probe("inconsistent input", "eval with a config of another rule", evaluate,
          match=r"holds a protocol of rule 'sgd', but this config's protocol section has rule 'mplp'")


def test_demo_of_a_protocol_trained_on_another_task_is_refused(run_dir, capsys):
    def demo():
        rc = main(["demo", "--protocol", _checkpoint(run_dir), "--runs", "2", "--plot", ""])
        err = capsys.readouterr().err
        if rc == 2 and "Traceback" not in err:
            from agentgraph import AgentGraphError

            raise AgentGraphError(err)
        return rc

    probe("inconsistent input", "demo of a sinusoid protocol", demo,
          match=r"was trained on data\.task 'sinusoid' with net\.sizes \[1, 4, 1\].*agentgraph eval")


@pytest.mark.parametrize("case, sigma, named", [
    ("ES sigma past run.max_meta_param", 5e3, r"meta\.optimizer\.sigma = 5000 is at or past run\.max_meta_param = 1000"),
    ("ES sigma under float32 resolution", 1e-30, r"meta\.optimizer\.sigma = 1e-30 is below float32's resolution"),
])
def test_an_es_sigma_no_generation_can_use_is_refused(tmp_path, case, sigma, named):
    cfg = parse_config(tiny(tmp_path / "r", **{"meta.optimizer": {**ES, "sigma": sigma}}))
    probe("inconsistent input", case, lambda: train(cfg, progress=False, log=lambda s: None), match=named)


def test_an_es_population_that_cannot_fit_is_refused_with_the_estimate(tmp_path):
    cfg = parse_config(tiny(tmp_path / "r", **{"meta.optimizer": {**ES, "popsize": 10**10}}))
    probe("cost limit", "ES population of 1e10 candidates", lambda: train(cfg, progress=False, log=lambda s: None),
          match=r"popsize = 10000000000 candidates of \d+ meta-parameters would need about [\d.e+]+ GiB per device "
                r"\(estimated before compiling\).*Lower meta\.optimizer\.popsize")
    assert not os.path.exists(tmp_path / "r" / "metrics.jsonl")


def test_multi_process_flags_without_a_coordinator_or_auto_outside_a_cluster(tmp_path, capsys, monkeypatch):
    import jax

    path = write_yaml(tmp_path / "c.yaml", tiny(tmp_path / "r"))

    def run(*flags):
        rc = main(["train", path, "--no-progress", *flags])
        err = capsys.readouterr().err
        if rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1:
            from agentgraph import AgentGraphError

            raise AgentGraphError(err)
        return rc

    probe("multi-host", "--num-processes without --coordinator", lambda: run("--num-processes", "2", "--process-id", "0"),
          match=r"--num-processes 2 and --process-id 0 were given without --coordinator")
    probe("multi-host", "--coordinator auto with --process-id", lambda: run("--coordinator", "auto", "--process-id", "1"),
          match=r"--coordinator auto reads the process count .* --process-id 1 would be ignored")
    for var in ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri", "JAX_COORDINATOR_ADDRESS", "KUBERNETES_SERVICE_HOST",
                "TPU_WORKER_HOSTNAMES", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(var, raising=False)
    old = jax.config.jax_cpu_collectives_implementation
    try:
        probe("multi-host", "--coordinator auto outside a cluster",
              lambda: run("--coordinator", "auto", "--distributed-timeout", "5"),
              match=r"--coordinator auto found no cluster .* give --coordinator HOST:PORT")
    finally:
        jax.config.update("jax_cpu_collectives_implementation", old)
    assert not os.path.exists(tmp_path / "r")
