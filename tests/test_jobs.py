"""A sweep's members as separate jobs (tdlab.core.jobs): merged, they are the engine's one-at-a-time run exactly,
and the stacked run up to rounding — with submitit's local executor (subprocesses, cloudpickle) and threads."""
import concurrent.futures
import functools

import numpy as np
import pytest

from tdlab.core import augment, data, engine, jobs, models


@pytest.fixture(scope="module")
def digits():
    return data.digits()


# a factory the jobs' processes can import (cloudpickle sends a test module's own functions by reference)
mlp = functools.partial(models.MLP, 64, 10, width=16, depth=2)


MEMBERS = [{"seed": 0, "lr": 1e-3, "noise_rate": 0.2}, {"seed": 1, "lr": 3e-3, "noise_rate": 0.4}]
COMMON = dict(steps=30, eval_every=10, batch_size=64, data_seed=2, progress=False)


def same(a, b):
    """The two histories' values, record by record (step, member, split, metric), after checking they hold
    the same records and knobs."""
    assert a.knobs == b.knobs and a.num_members == b.num_members
    key = lambda r: (r["step"], r["member"], r["split"], r["metric"])  # noqa: E731
    ra, rb = sorted(a.records, key=key), sorted(b.records, key=key)
    assert [key(r) for r in ra] == [key(r) for r in rb]
    return np.array([r["value"] for r in ra]), np.array([r["value"] for r in rb])


def test_submitit_jobs_equal_the_one_at_a_time_run_and_the_stacked_one(digits, tmp_path):
    submitit = pytest.importorskip("submitit")
    executor = submitit.LocalExecutor(folder=tmp_path / "jobs")
    executor.update_parameters(timeout_min=5)
    merged = jobs.run(mlp, digits, MEMBERS, executor=executor, **COMMON)
    alone = engine.run(mlp, digits, MEMBERS, batched=False, **COMMON)
    stacked = engine.run(mlp, digits, MEMBERS, batched=True, **COMMON)
    got, want = same(merged, alone)
    np.testing.assert_array_equal(got, want)                              # the same arithmetic, in another process
    got, want = same(merged, stacked)
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    assert len(merged.models) == 2 and merged.models[1] is not None


def test_a_hook_with_settings_per_member_is_split_into_each_jobs_own(digits):
    hook = augment.per_member([augment.mixup(alpha=1.0, seed=3), augment.mixup(alpha=8.0, seed=4)])
    settings = dict(COMMON, batch_hook=hook, loss="soft_ce")
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        merged = jobs.run(mlp, digits, MEMBERS, executor=pool, **settings)
    alone = engine.run(mlp, digits, MEMBERS, batched=False, **settings)
    got, want = same(merged, alone)
    np.testing.assert_array_equal(got, want)
    assert [k.get("mixup_alpha") for k in merged.knobs] == [1.0, 8.0]                 # each job its own hook


def test_bad_input_is_refused(digits):
    with pytest.raises(ValueError, match="submit"):
        jobs.run(mlp, digits, MEMBERS, executor=object(), **COMMON)
    with pytest.raises(ValueError, match="factory"):
        jobs.run(mlp(), digits, MEMBERS, executor=concurrent.futures.ThreadPoolExecutor(), **COMMON)
    with pytest.raises(ValueError, match="callback"):
        jobs.run(mlp, digits, MEMBERS, executor=concurrent.futures.ThreadPoolExecutor(), callback=print, **COMMON)
