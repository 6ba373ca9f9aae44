"""The command line: --help everywhere, train → eval → export → demo on a tiny digits run, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from agentgraph.cli import main


@pytest.mark.parametrize("cmd", [[], ["demo"], ["gradcheck"], ["train"], ["eval"], ["export"], ["bench"], ["show"], ["plot"], ["draw"]])
def test_help(cmd, capsys):
    with pytest.raises(SystemExit) as e:
        main([*cmd, "--help"])
    assert e.value.code == 0
    assert "usage: agentgraph" in capsys.readouterr().out


def test_train_then_eval_digits(tmp_path, capsys):
    pytest.importorskip("sklearn")
    cfg = tmp_path / "digits.toml"
    cfg.write_text(
        "[net]\nsizes = [64, 10]\n[data]\ntask = 'digits'\nimage_size = 8\ncv_batch = 20\n"
        "[protocol]\nk = 2\nhidden = 2\nsharing = 'kind'\ncalibration_rounds = 1\n"
        f"[meta]\ninner_steps = 3\nbatch = 4\nmeta_steps = 2\nprior_pool = 2\n"
        f"[run]\nout_dir = '{tmp_path / 'run'}'\ncheckpoint_every = 1\n"
    )
    assert main(["train", str(cfg), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "meta-steps run: 2" in out
    ck = tmp_path / "run" / "ckpt_00000001.npz"
    res_path = tmp_path / "eval.json"
    assert main(["eval", str(ck), "--runs", "3", "--sgd-lr", "0.1", "--adam-lr", "0.01", "--out", str(res_path)]) == 0
    out = capsys.readouterr().out
    assert "accuracy after each inner step" in out and "MPLP" in out
    res = json.loads(res_path.read_text())
    assert len(res["protocol"]["mean"]) == 4 and res["sgd"]["lr"] == 0.1
    assert all(0.0 <= a <= 1.0 for a in res["adam"]["mean"])
    # transfer to a wider hidden layer with the input statistics re-measured there
    assert main(["eval", str(ck), "--runs", "2", "--sgd-lr", "0.1", "--adam-lr", "0.01", "--set", "net.sizes=[64,12,10]",
                 "--remeasure"]) == 2  # the checkpoint's net has no hidden layer: refused, one line
    assert main(["eval", str(ck), "--runs", "2", "--sgd-lr", "0.1", "--adam-lr", "0.01", "--remeasure"]) == 0
    assert "re-measured on this network as meta-training measured them" in capsys.readouterr().out
    # on the training network the re-measured statistics are the checkpoint's own
    from agentgraph.meta.context import make_context
    from agentgraph.meta.protocol_io import checkpoint_config, load_protocol
    from agentgraph.meta.tasks import task_family
    from agentgraph.meta.train import measure_stats

    ck_cfg = checkpoint_config(str(ck))
    ck_ctx = make_context(ck_cfg)
    _, ck_norm = load_protocol(str(ck), ck_ctx)
    again = ck_ctx.protocol.transfer_stats(ck_norm, measure_stats(ck_ctx, task_family(ck_cfg))[1])
    for group in ck_norm:
        for field in ("in_mean", "in_inv_std", "out_mean"):
            np.testing.assert_allclose(again[group][field], ck_norm[group][field], rtol=1e-5, atol=1e-7)
    # export the protocol alone, and run the demo with it: table and plot
    small = tmp_path / "protocol.npz"
    assert main(["export", str(ck), str(small), "--sgd-lr", "0.2", "--adam-lr", "0.02"]) == 0
    assert small.stat().st_size < ck.stat().st_size
    png = tmp_path / "demo.png"
    assert main(["demo", "--protocol", str(small), "--runs", "3", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "SGD (lr 0.2)" in out and "Adam (lr 0.02)" in out and "MPLP" in out
    assert png.stat().st_size > 1000


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("meta:\n  batch: -1\n")
    assert main(["train", str(bad)]) == 2
    assert "meta.batch" in capsys.readouterr().err


def test_show_plot_and_draw(tmp_path, capsys):
    """What a researcher looks at: a checkpoint's contents, a run's curves, a network's graph."""
    from agentgraph import pretrained

    assert main(["show", pretrained.path("digits")]) == 0
    out = capsys.readouterr().out
    assert "protocol: mplp" in out and "network: mlp" in out and "trainable/protocol" in out and "std" in out
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "meta_loss": 2.0 - 0.1 * s, "cv": 1.5,
                                                           **({"eval": 0.2} if s == 3 else {})}) + "\n" for s in range(5)))
    assert main(["plot", str(run)]) == 0 and (run / "run.png").stat().st_size > 1000
    assert main(["plot", str(run), str(run), "--out", str(tmp_path / "two.svg")]) == 0  # overlaid
    assert main(["plot", str(tmp_path)]) == 2
    assert "holds no metrics.jsonl rows" in capsys.readouterr().err
    cfg = tmp_path / "c.yaml"
    cfg.write_text("net: {sizes: [3, 4, 2]}\ndata: {task: digits, image_size: 8}\nprotocol: {rule: sgd}\n")
    png = tmp_path / "g.png"
    assert main(["draw", str(cfg), "--set", "data.image_size=2", "--set", "net.sizes=[4,3,2]", "--out", str(png)]) == 0
    assert png.stat().st_size > 1000
    big = tmp_path / "big.svg"  # the (144, 50, 10) MPLP network: collapsed by (kind, group)
    assert main(["draw", str(cfg), "--set", "net.sizes=[144,50,10]", "--set", "data.image_size=12",
                 "--set", "protocol={rule: mplp}", "--out", str(big)]) == 0
    assert "synapse:0" in big.read_text()


def test_draw_graph_shows_delayed_arrows_and_self_loops(tmp_path):
    from agentgraph.builders import grid
    from agentgraph.models.nca import NCACell
    assert (tmp_path / "nca.png").exists() is False
    grid(3, 3, NCACell(4, 8)).draw(str(tmp_path / "nca.png"))
    assert (tmp_path / "nca.png").stat().st_size > 1000
