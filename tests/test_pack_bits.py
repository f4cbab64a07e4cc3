"""One run, one result: a student's bits do not depend on its pack (issue 19).

A member of a pack of any size, with any partners, at any place, trained alone, resumed from a
saved state (also after a SIGKILL mid-epoch) or on a busy machine ends with the same weights
(``torch.equal``) and the same row values, for a plain, an ensemble-taught and a BatchNorm student.
"""

from __future__ import annotations

import copy
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from harness.config_loading import load_config
from harness.distill import distill_pack
from harness.experiment import open_store
from harness.models import create_model, list_models
from harness.packed_layers import fold
from harness.packing import PackedModel, pack_threads
from harness.runs import Run
from harness.teachers import train_trajectory
from tests.helpers import QUICKSTART, ROOT, tiny_overrides

PLAIN = {"teacher_choice": "full", "seed": 0, "temperature": 4.0, "kd_weight": 0.5, "teacher_seed": 0}
ENSEMBLE = {"teacher_choice": "snapshot:[0.5,1.0]", "seed": 1, "temperature": 2.0, "kd_weight": 0.9, "teacher_seed": 1}
PARTNERS = [  # differ in seed, teacher, temperature and kd_weight
    {"teacher_choice": "none", "seed": 2, "temperature": 4.0, "kd_weight": 0.0, "teacher_seed": 0},
    {"teacher_choice": "full_ensemble:2", "seed": 3, "temperature": 3.0, "kd_weight": 0.7, "teacher_seed": 0},
    {"teacher_choice": "epoch:2", "seed": 4, "temperature": 1.0, "kd_weight": 0.3, "teacher_seed": 1},
]
NOT_COMPUTED = {"wall_time_s", "pack_size", "digest", "environment"}  # where and when, not what
SMALL = {"data.num_samples": 2000, "student.epochs": 2}  # half the tiny data: bit-equality does not need more


@pytest.fixture(scope="module")
def taught(tmp_path_factory):
    cfg = load_config(QUICKSTART, tiny_overrides(tmp_path_factory.mktemp("bits") / "runs", **SMALL))
    for seed in cfg.teacher.seeds:
        train_trajectory(cfg, "cnn1d_small", int(seed))
    return cfg


def _fresh(taught, tmp_path, name: str, arch: str = "mlp_small"):
    """``taught``'s config with its own results folder, the same trajectories (symlinked)."""
    cfg = copy.deepcopy(taught)
    cfg.storage = str(tmp_path / name)
    cfg.student.archs = [arch]
    dst = open_store(cfg).trajectories_dir
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.symlink_to(open_store(taught).trajectories_dir, target_is_directory=True)
    return cfg


def _train(cfg, runs: list[dict], resume: dict | None = None) -> tuple[list[dict], dict]:
    """Rows and the final pack state of ``runs`` trained as one pack."""
    states: list[dict] = []
    rows = distill_pack(
        cfg,
        [Run.from_dict(cfg, r) for r in runs],
        on_epoch=lambda m, s: states.append(copy.deepcopy(s)),
        resume=resume,
    )
    return rows, (states[-1] if states else {})


def _member(state: dict, i: int) -> dict[str, torch.Tensor]:
    return {k: v[i] for part in ("params", "buffers") for k, v in state["pack"][part].items()}


def _assert_same(a: tuple[dict, dict[str, torch.Tensor]], b: tuple[dict, dict[str, torch.Tensor]]) -> None:
    (row_a, weights_a), (row_b, weights_b) = a, b
    assert weights_a.keys() == weights_b.keys()
    differ = [k for k in weights_a if not torch.equal(weights_a[k], weights_b[k])]
    assert not differ, f"tensors that differ: {differ}"
    assert row_a.keys() == row_b.keys() and "weights_sha256" in row_a
    assert {k: v for k, v in row_a.items() if k not in NOT_COMPUTED} == {
        k: v for k, v in row_b.items() if k not in NOT_COMPUTED
    }


@pytest.mark.parametrize("arch", ["mlp_small", "cnn1d_tiny"])  # plain MLP; BatchNorm CNN
def test_a_student_ends_with_the_same_bits_alone_and_in_any_pack(taught, tmp_path, arch):
    results = {}
    packings = {
        "alone": [PLAIN],
        "pack of 2": [ENSEMBLE, PLAIN],
        "pack of 9": [*PARTNERS, PLAIN, ENSEMBLE, *[{**p, "seed": p["seed"] + 10} for p in PARTNERS], PARTNERS[0]],
    }
    for name, runs in packings.items():
        rows, state = _train(_fresh(taught, tmp_path, name.replace(" ", "_"), arch), runs)
        for who in (PLAIN, ENSEMBLE):
            if who in runs:
                i = runs.index(who)
                results[(name, who["teacher_choice"])] = (rows[i], _member(state, i))
    for choice in ("full", "snapshot:[0.5,1.0]"):
        found = [v for (name, c), v in results.items() if c == choice]
        assert len(found) >= 2
        for other in found[1:]:
            _assert_same(found[0], other)


@pytest.mark.parametrize("arch", ["mlp_small", "cnn1d_tiny"])
def test_a_resumed_pack_continues_bit_for_bit(taught, tmp_path, arch):
    runs = [PLAIN, ENSEMBLE, PARTNERS[0]]
    states: list[dict] = []
    cfg = _fresh(taught, tmp_path, "whole", arch)
    whole = distill_pack(
        cfg, [Run.from_dict(cfg, r) for r in runs], on_epoch=lambda m, s: states.append(copy.deepcopy(s))
    )
    again = _fresh(taught, tmp_path, "resumed", arch)
    resumed, state = _train(again, runs, resume=states[0])  # from the state after epoch 1
    for i in range(len(runs)):
        _assert_same((whole[i], _member(states[-1], i)), (resumed[i], _member(state, i)))


def test_a_pack_killed_mid_epoch_resumes_to_the_same_bits(taught, tmp_path):
    """A real SIGKILL mid-epoch in a child process; its last saved state (an epoch's end) continues here."""
    cfg = _fresh(taught, tmp_path, "killed")
    cfg.student.epochs = 20
    saved, flag = tmp_path / "state.pt", tmp_path / "epoch1"
    code = (
        "import sys, time, torch\n"
        "from harness.config_loading import load_config\n"
        "from harness.distill import distill_pack\n"
        "from harness.runs import Run\n"
        f"cfg = load_config({str(QUICKSTART)!r}, {tiny_overrides(cfg.storage, **{**SMALL, 'student.epochs': 20})!r})\n"
        "import os\n"
        "def on_epoch(m, s):\n"  # atomic: the kill may land while a later epoch's state is written
        f"    torch.save(s, {str(saved)!r} + '.tmp'); os.replace({str(saved)!r} + '.tmp', {str(saved)!r})\n"
        f"    open({str(flag)!r}, 'w').close()\n"
        f"distill_pack(cfg, [Run.from_dict(cfg, r) for r in {[PLAIN, ENSEMBLE]!r}], on_epoch=on_epoch)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not flag.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    assert flag.exists(), child.stderr.read()[-2000:] if child.poll() is not None else "no epoch finished in 120 s"
    time.sleep(0.3)  # inside a later epoch
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    state = torch.load(saved, weights_only=False)
    assert 1 <= len(state["histories"][0]) < 20  # killed before the end
    resumed, end = _train(cfg, [PLAIN, ENSEMBLE], resume=state)
    whole_cfg = _fresh(taught, tmp_path, "unkilled")
    whole_cfg.student.epochs = 20
    whole, whole_end = _train(whole_cfg, [PLAIN, ENSEMBLE])
    for i in range(2):
        _assert_same((whole[i], _member(whole_end, i)), (resumed[i], _member(end, i)))


@pytest.mark.parametrize("arch", ["mlp_small", "cnn1d_tiny"])
def test_a_busy_machine_and_more_threads_give_the_same_bits(taught, tmp_path, arch):
    quiet_rows, quiet = _train(_fresh(taught, tmp_path, "quiet", arch), [ENSEMBLE, PLAIN])
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)  # what another process state could leave behind
        busy_rows, busy = _train(_fresh(taught, tmp_path, "busy", arch), [PLAIN, ENSEMBLE])  # other places too
    finally:
        torch.set_num_threads(threads)
        for b in burners:
            b.kill()
    _assert_same((quiet_rows[0], _member(quiet, 0)), (busy_rows[1], _member(busy, 1)))
    _assert_same((quiet_rows[1], _member(quiet, 1)), (busy_rows[0], _member(busy, 0)))
    assert json.dumps(busy_rows[0]["environment"]["threads"]) == "1"  # a pack computes with one thread on a CPU


def _input_shape(arch: str) -> tuple[int, ...]:
    return (1, 40) if arch.startswith(("mlp", "cnn1d")) else (3, 16, 16)


@pytest.mark.parametrize("arch", list_models())
def test_every_model_packs_each_member_to_the_same_bits(arch):
    """One SGD step of member 0 alone and at places 1 and 2 of packs with other partners:
    equal logits, gradients, weights and BatchNorm statistics; the packed net is the model."""
    shape = _input_shape(arch)
    torch.manual_seed(0)
    models = [create_model(arch, num_classes=10, input_shape=shape) for _ in range(3)]
    x = torch.randn(3, 4, *shape)
    y = torch.randint(0, 10, (3, 4))
    out = []
    with pack_threads(torch.device("cpu")):  # as packs compute
        for order in ([0], [1, 0], [2, 1, 0]):
            pack = PackedModel([copy.deepcopy(models[i]) for i in order])
            opt = torch.optim.SGD(pack.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4, fused=True)
            logits = pack(x[order])
            torch.nn.functional.cross_entropy(logits.flatten(0, 1), y[order].flatten(), reduction="sum").backward()
            opt.step()
            i = order.index(0)
            out.append((logits[i].detach(), pack.member_state_dict(i)))
    for logits, state in out[1:]:
        assert torch.equal(logits, out[0][0])
        assert all(torch.equal(state[k], out[0][1][k]) for k in state)
    alone = models[0].train()(x[0])
    torch.testing.assert_close(out[0][0], alone, rtol=1e-4, atol=1e-5)  # the folded net computes the model


def test_a_layer_that_cannot_be_packed_is_named():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    with pytest.raises(ValueError, match="cannot pack layer '1' \\(LayerNorm\\)"):
        fold([model, copy.deepcopy(model)])
    with pytest.raises(ValueError, match="dropout"):
        fold([torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1))])


@pytest.mark.parametrize("out_features", [10, 128])  # 10: no multiple of the vector width
def test_a_packed_linear_member_has_the_bits_of_the_plain_layer_in_packs_up_to_64(out_features):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(128, out_features) for _ in range(64)]
    x, g = torch.randn(32, 64 * 128), torch.randn(32, 64 * out_features)
    with pack_threads(torch.device("cpu")):
        for n in (1, 2, 5, 64):
            pack = fold([torch.nn.Sequential(layer) for layer in layers[:n]])
            xs = x[:, : n * 128].clone().requires_grad_()
            y = pack(xs).flatten(1)  # [B, N*out], member-major
            y.backward(g[:, : n * out_features])
            params = {k: v.grad for k, v in pack.named_parameters()}
            for i in (0, n - 1):  # the first and the last member: the last is where tails used to fall
                alone = torch.nn.Linear(128, out_features)
                alone.load_state_dict(layers[i].state_dict())
                xi = x[:, i * 128 : (i + 1) * 128].clone().requires_grad_()
                yi = alone(xi)
                yi.backward(g[:, i * out_features : (i + 1) * out_features])
                assert torch.equal(y[:, i * out_features : (i + 1) * out_features], yi)
                assert torch.equal(xs.grad[:, i * 128 : (i + 1) * 128], xi.grad)
                assert torch.equal(params["0.weight"][i], alone.weight.grad)
                bias = params.get("0.bias")
                bias = bias[i] if bias is not None else params["0.bias_padded"][i, :out_features]
                assert torch.equal(bias, alone.bias.grad)
