"""Property-based fuzzing of configs and dotlist overrides (hypothesis).

Every override either yields a config that passes validation, or is refused before any compute
with one line that names a config key (and the CLI then writes nothing); overrides drawn from
the documented valid ranges always pass.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from omegaconf import OmegaConf

from harness.cli import main
from harness.config import ConfigError, ExperimentConfig
from harness.config_loading import load_config
from harness.registry import known_names
from harness.teacher_choices import describe_teacher_choices
from tests.helpers import QUICKSTART


def _leaves(node, prefix: str = "") -> list[str]:
    out = []
    for key in node:
        value = node._get_node(key)
        path = f"{prefix}{key}"
        out += _leaves(value, path + ".") if OmegaConf.is_dict(value) else [path]
    return out


KEYS = sorted(k for k in _leaves(OmegaConf.structured(ExperimentConfig)) if k != "data.options")
NASTY = [
    "-1",
    "0",
    "abc",
    "1.5",
    "-0.5",
    "[]",
    "[x]",
    "[1,1]",
    "..",
    "/tmp/x",
    "null",
    "true",
    "1e9",
    "''",
    "{}",
    "cuda:99",
    "fraction:2",
    "snapshot:[0.5]",
    "selected:nope",
    "[none,full,bogus:1]",
    ".inf",  # out of range (issue 18): non-finite, huge, or huge in a list
    "-.inf",
    ".nan",
    "1e308",
    "1000000000000",
    "[.inf]",
    "[1e308]",
    "[1000000000000]",
]
override = st.tuples(
    st.sampled_from(KEYS),
    st.one_of(st.sampled_from(NASTY), st.integers(-5, 5).map(str), st.text("ab.-_/:[],0123456789", max_size=8)),
)


# max_examples: each example is a real load_config (~0.1 s of OmegaConf merging); 80 here and 60 below keep
# the module near 20 s on 2 busy cores (hypothesis still shrinks and replays any failure it finds)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(override, min_size=1, max_size=3))
def test_any_override_is_valid_or_refused_in_one_line_naming_a_key(pairs):
    overrides = [f"{k}={v}" for k, v in pairs]
    try:
        load_config(QUICKSTART, overrides)
    except ConfigError as e:
        msg = str(e)
        assert "\n" not in msg and msg.strip(), msg
        assert "config key '" in msg or "override" in msg, msg


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(override, min_size=1, max_size=2))
def test_a_refused_config_writes_nothing_through_the_cli(tmp_path_factory, pairs):
    overrides = [f"{k}={v}" for k, v in pairs if k != "storage"]
    try:
        load_config(QUICKSTART, [*overrides, "cluster.mode=local"])  # as the CLI loads it with --local
        return  # valid: not this property (e.g. a bad cluster.mode that --local replaces)
    except ConfigError:
        pass
    storage = Path(tmp_path_factory.mktemp("fuzz")) / "runs"
    assert main(["teachers", str(QUICKSTART), f"storage={storage}", *overrides, "--local", "-q"]) == 2
    assert not storage.exists()


def _valid_choice() -> st.SearchStrategy[str]:
    kinds = known_names("teacher choice")
    examples = [example for syntax, example, _ in describe_teacher_choices() if syntax.partition(":")[0] in kinds]
    return st.one_of(
        st.sampled_from(examples),  # every registered choice's documented example
        st.integers(1, 40).map(lambda e: f"epoch:{e}"),
        st.floats(0.01, 1.0).map(lambda f: f"fraction:{f:.2f}"),
        st.sampled_from(known_names("selector")).map(lambda s: f"selected:{s}"),
        st.lists(st.floats(0.05, 1.0), min_size=2, max_size=3).map(
            lambda fs: "snapshot:[" + ",".join(f"{f:.2f}" for f in fs) + "]"
        ),
    )


VALID = {
    "teacher.epochs": st.integers(40, 300).map(str),  # the quickstart has 40: every range below fits it
    "teacher.checkpoint_every": st.integers(1, 40).map(str),
    "data.val_fraction": st.floats(0.02, 0.5).map(lambda f: f"{f:.3f}"),
    "data.batch_size": st.integers(1, 1024).map(str),
    "data.eval_batch_size": st.integers(1, 4096).map(str),
    "teacher.optim.momentum": st.floats(0.0, 0.99).map(lambda f: f"{f:.3f}"),
    "student.optim.lr": st.floats(1e-4, 1.0).map(lambda f: f"{f:.5f}"),
    "teacher.optim.schedule": st.sampled_from(["cosine", "step", "constant"]),
    "distill.kd_weight": st.floats(0.0, 1.0).map(lambda f: f"{f:.3f}"),
    "distill.temperature": st.floats(0.1, 20.0).map(lambda f: f"{f:.2f}"),
    "distill.teacher_choice": _valid_choice(),
    "student.archs": st.sampled_from(known_names("model")).map(lambda m: f"[{m}]"),
    "scoring.estimators": st.sampled_from(known_names("estimator")).map(lambda e: f"[{e}]"),
    "name": st.text("abcXYZ019._-", max_size=12).map(lambda s: "x" + s),  # a bare "-" or "1e5" is YAML, not a name
    "sweep.scheduler": st.sampled_from(["none", "asha"]),
    "tracking.mode": st.sampled_from(["disabled", "offline", "online"]),
    "scoring.proxy.selectors": st.lists(st.sampled_from(["proxy_small", "proxy", "proxy_large"]), unique=True).map(
        lambda names: "[" + ",".join(names) + "]"
    ),
    "scoring.proxy.epochs": st.integers(1, 20).map(str),
    "scoring.proxy.rungs": st.integers(1, 4).map(str),  # epochs x reduction_factor^(rungs-1) <= 10000
    "scoring.proxy.reduction_factor": st.integers(2, 4).map(str),
    "scoring.proxy.seeds": st.integers(1, 5).map(str),
    "scoring.proxy.student": st.sampled_from(known_names("model")),
}


@settings(max_examples=60, deadline=None)
@given(st.fixed_dictionaries({}, optional=VALID))
def test_overrides_from_the_documented_ranges_always_pass(values):
    cfg = load_config(QUICKSTART, [f"{k}={v}" for k, v in values.items()])
    assert cfg.teacher.checkpoint_every <= cfg.teacher.epochs
