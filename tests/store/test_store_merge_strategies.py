"""Every merge strategy against numbers computed by hand on tiny tensors."""

from __future__ import annotations

import pytest
import torch

from rewardkit.errors import StoreError
from rewardkit.store.merge_strategies import (
    average,
    check_strategy,
    combine,
    dare,
    ours,
    task_arithmetic,
    theirs,
    ties,
)


def t(*values: float, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(values, dtype=dtype)


def test_average_uniform_and_weighted_by_hand() -> None:
    # (1+3)/2 = 2, (2+6)/2 = 4: the mean, not half of it (git-theta's bug)
    assert torch.equal(average([t(1, 2), t(3, 6)]), t(2, 4))
    # weights 1:3 normalised to 0.25, 0.75: 0.25*1 + 0.75*3 = 2.5, 0.25*2 + 0.75*6 = 5
    assert torch.equal(average([t(1, 2), t(3, 6)], [1, 3]), t(2.5, 5))
    assert torch.equal(average([t(1, 2), t(3, 6)], [0.25, 0.75]), t(2.5, 5))
    # three sides: (1+2+6)/3 = 3
    assert torch.equal(average([t(1), t(2), t(6)]), t(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("n", [2, 3, 5, 7])
def test_average_of_identical_models_is_the_model_exactly(dtype: torch.dtype, n: int) -> None:
    x = torch.randn(64, 33, generator=torch.Generator().manual_seed(n)).to(dtype)
    out = average([x.clone() for _ in range(n)])
    assert out.dtype == dtype and torch.equal(out, x)
    assert torch.equal(average([x] * n, [0.1 * (i + 1) for i in range(n)]), x)


def test_average_keeps_dtype_and_rounds_once() -> None:
    a, b = t(1.0, dtype=torch.bfloat16), t(1.0078125, dtype=torch.bfloat16)  # adjacent bf16 values
    out = average([a, a, b])  # 1.0026 in float64, nearest bf16 is 1.0
    assert out.dtype == torch.bfloat16 and out.item() == 1.0


def test_task_arithmetic_by_hand() -> None:
    base, s1, s2 = t(1, 1), t(2, 0), t(1, 3)
    # deltas (1,-1) and (0,2), sum (1,1); lambda 0.5 -> base + (0.5, 0.5)
    assert torch.equal(task_arithmetic(base, [s1, s2], lam=0.5), t(1.5, 1.5))
    # weights 2,1: 2*(1,-1) + (0,2) = (2,0) -> (3,1)
    assert torch.equal(task_arithmetic(base, [s1, s2], [2, 1]), t(3, 1))
    # one side, lambda 1: the side itself
    assert torch.equal(task_arithmetic(base, [s1]), s1)


TIES_BASE = t(1, 1, 1, 1)
TIES_SIDES = [TIES_BASE + t(3, -1, 0.5, -2), TIES_BASE + t(-1, 2, 0.25, -4), TIES_BASE + t(2, -3, -0.1, 1)]


def test_ties_by_hand() -> None:
    # density 0.5 keeps 2 of 4 entries per task vector:
    #   (3,0,0,-2), (0,2,0,-4), (2,-3,0,0); sum (5,-1,0,-6) elects signs (+,-,0,-)
    #   disjoint means: (3+2)/2 = 2.5; -3 (the +2 disagrees); 0 (no entry kept); (-2-4)/2 = -3
    out = ties(TIES_BASE, TIES_SIDES, density=0.5)
    torch.testing.assert_close(out, TIES_BASE + t(2.5, -3, 0, -3), rtol=0, atol=1e-6)
    torch.testing.assert_close(ties(TIES_BASE, TIES_SIDES, density=0.5, lam=0.5),
                               TIES_BASE + t(1.25, -1.5, 0, -1.5), rtol=0, atol=1e-6)
    # weights 1,1,2 scale the third task vector to (4,-6,0,0); sum (7,-4,0,-6), same signs;
    #   weighted disjoint means (3+4)/(1+2) = 7/3, -6/2 = -3, 0, (-2-4)/(1+1) = -3
    torch.testing.assert_close(ties(TIES_BASE, TIES_SIDES, [1, 1, 2], density=0.5),
                               TIES_BASE + t(7 / 3, -3, 0, -3), rtol=0, atol=1e-6)


def test_ties_density_one_keeps_everything() -> None:
    # no trimming: sums (4,-2,0.65,-5) elect (+,-,+,-); means (3+2)/2, (-1-3)/2, (0.5+0.25)/2, (-2-4)/2
    torch.testing.assert_close(ties(TIES_BASE, TIES_SIDES, density=1.0),
                               TIES_BASE + t(2.5, -2, 0.375, -3), rtol=0, atol=1e-6)


def test_dare_keeps_or_drops_each_entry_and_rescales() -> None:
    base = torch.zeros(2000)
    s1, s2 = base + 1.0, base + 10.0
    out = dare(base, [s1, s2], density=0.5, seed=3, name="w")
    # each entry is base + 2*(m1*1 + m2*10) with m in {0,1}: 0, 2, 20 or 22
    assert set(out.unique().tolist()) == {0.0, 2.0, 20.0, 22.0}
    kept1 = ((out == 2) | (out == 22)).float().mean().item()
    assert 0.45 < kept1 < 0.55  # drop rate p = 0.5
    assert abs(out.mean().item() - 11.0) < 0.6  # expectation is task arithmetic's 1 + 10


def test_dare_is_seeded_by_seed_and_name_not_by_order() -> None:
    base = torch.zeros(500)
    sides = [base + 1, base + 2]
    a = dare(base, sides, density=0.3, seed=1, name="layer.0.weight")
    dare(base, sides, density=0.3, seed=1, name="other")  # visiting another tensor first changes nothing
    assert torch.equal(dare(base, sides, density=0.3, seed=1, name="layer.0.weight"), a)
    assert not torch.equal(dare(base, sides, density=0.3, seed=2, name="layer.0.weight"), a)
    assert not torch.equal(dare(base, sides, density=0.3, seed=1, name="layer.1.weight"), a)


def test_dare_density_one_is_task_arithmetic() -> None:
    base, s1, s2 = t(1, 1), t(2, 0), t(1, 3)
    assert torch.equal(dare(base, [s1, s2], [2, 1], lam=0.5, density=1.0), task_arithmetic(base, [s1, s2], [2, 1], 0.5))


def test_ours_theirs_and_combine_by_name() -> None:
    a, b, c = t(1), t(2), t(3)
    assert ours([a, b, c]) is a and theirs([a, b]) is b
    assert torch.equal(combine("average", t(0), [a, c]), t(2))
    assert torch.equal(combine("task-arithmetic", t(0), [a, c]), t(4))
    assert torch.equal(combine("ties", t(0), [a, c], density=1.0), t(2))
    assert torch.equal(combine("dare", t(0), [a, c], density=1.0), t(4))
    with pytest.raises(StoreError, match="unknown merge strategy 'mean'"):
        combine("mean", t(0), [a])


def test_bf16_is_computed_in_higher_precision() -> None:
    base = t(256, dtype=torch.bfloat16)
    sides = [t(257, dtype=torch.bfloat16)] * 2  # 257 is not a bf16: both sides are 256
    assert task_arithmetic(base, sides).item() == 256.0
    base, s = t(1, dtype=torch.bfloat16), t(1.0078125, dtype=torch.bfloat16)
    # delta 0.0078125 twice, lambda 0.5: exactly 1.0078125 (bf16 arithmetic on the sum would round too)
    assert task_arithmetic(base, [s, s], lam=0.5).item() == 1.0078125


def test_integer_tensors_are_refused() -> None:
    with pytest.raises(StoreError, match="torch.int64 tensor"):
        average([torch.arange(3), torch.arange(3)])


def test_check_strategy_refuses_bad_arguments() -> None:
    check_strategy("ties", [1, 2], 2, 0.2)
    with pytest.raises(StoreError, match="--weights has 3 values for 2 models"):
        check_strategy("average", [1, 1, 1], 2, None)
    with pytest.raises(StoreError, match="finite and non-negative"):
        check_strategy("average", [1, -1], 2, None)
    with pytest.raises(StoreError, match="sum to 0"):
        check_strategy("average", [0, 0], 2, None)
    with pytest.raises(StoreError, match=r"density \(--density\) must be in \(0, 1\]"):
        check_strategy("dare", None, 2, 1.5)
    with pytest.raises(StoreError, match="unknown merge strategy"):
        check_strategy("slerp", None, 2, None)
