"""Transitions and segments: files round-trip, every bad file gets one line naming file, field, row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rewardkit.data.transitions import (
    Segments,
    Transitions,
    fingerprint,
    load_segments,
    load_transitions,
    save_segments,
    save_transitions,
    segment_starts,
    segments_from_transitions,
)
from rewardkit.errors import ConfigError, DataError

N = 12


def make_transitions(n: int = N, *, ends: tuple[int, ...] = (4, 11), discrete: bool = True) -> Transitions:
    rng = np.random.default_rng(0)
    dones = np.zeros(n, dtype=bool)
    dones[list(ends)] = True
    return Transitions(
        obs=rng.normal(size=(n, 3)).astype(np.float32),
        acts=rng.integers(0, 2, size=n) if discrete else rng.normal(size=(n, 2)).astype(np.float32),
        rews=rng.normal(size=n).astype(np.float32),
        next_obs=rng.normal(size=(n, 3)).astype(np.float32),
        terminated=dones.copy(),
        truncated=np.zeros(n, dtype=bool),
        env_id="Toy-v0",
    )


def arrays_of(t: Transitions) -> dict[str, np.ndarray]:
    return {k: getattr(t, k) for k in ("obs", "acts", "rews", "next_obs", "terminated", "truncated")}


def assert_one_line_naming(err: pytest.ExceptionInfo, path: Path, field: str, row: int) -> None:
    message = str(err.value)
    assert "\n" not in message
    assert str(path) in message and f"field '{field}'" in message and f"row {row}" in message, message


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
@pytest.mark.parametrize("discrete", [True, False])
def test_transitions_round_trip(tmp_path: Path, suffix: str, discrete: bool) -> None:
    t = make_transitions(discrete=discrete)
    path = save_transitions(t, tmp_path / f"t{suffix}")
    back = load_transitions(path)
    for name, array in arrays_of(t).items():
        np.testing.assert_array_equal(getattr(back, name), array)
        assert getattr(back, name).dtype == array.dtype
    assert back.acts.dtype == (np.int64 if discrete else np.float32)
    assert back.env_id == "Toy-v0"
    assert fingerprint(back) == fingerprint(t)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"t{suffix}"]  # no temp file left


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_segments_round_trip(tmp_path: Path, suffix: str) -> None:
    segments = segments_from_transitions(make_transitions(discrete=False), 3)
    back = load_segments(save_segments(segments, tmp_path / f"s{suffix}"))
    for name in ("obs", "acts", "next_obs", "rews"):
        np.testing.assert_array_equal(getattr(back, name), getattr(segments, name))
    assert fingerprint(back) == fingerprint(segments)


def test_fingerprint_covers_content_and_order_not_format(tmp_path: Path) -> None:
    t = make_transitions()
    a = fingerprint(load_transitions(save_transitions(t, tmp_path / "a.npz")))
    b = fingerprint(load_transitions(save_transitions(t, tmp_path / "b.parquet")))
    assert a == b == fingerprint(t) and len(a) == 64
    changed = arrays_of(t)
    changed["rews"] = changed["rews"].copy()
    changed["rews"][7] += 1
    assert fingerprint(Transitions(**changed, env_id="Toy-v0")) != a
    reordered = {k: v[::-1] for k, v in arrays_of(t).items()}
    assert fingerprint(Transitions(**reordered, env_id="Toy-v0")) != a
    assert fingerprint(Transitions(**arrays_of(t), env_id="Other-v0")) != a


def test_float64_and_int_flags_are_normalised() -> None:
    t = make_transitions()
    loose = {k: (v.astype(np.float64) if v.dtype == np.float32 else v) for k, v in arrays_of(t).items()}
    loose["terminated"] = t.terminated.astype(np.int8)
    strict = Transitions(**loose)
    assert strict.obs.dtype == np.float32 and strict.terminated.dtype == bool
    np.testing.assert_array_equal(strict.terminated, t.terminated)


# --- validation: each error names the file, the field and the first bad row ---------------------


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    np.savez(path, **arrays)
    return path


def assert_npz_refused(path: Path, arrays: dict[str, np.ndarray], field: str, row: int, *,
                       load: Callable[[Path], object] = load_transitions, match: str | None = None) -> None:
    """Write ``arrays`` to ``path``: loading it raises a one-line DataError naming the file, ``field`` and ``row``."""
    write_npz(path, arrays)
    with pytest.raises(DataError, match=match) as err:
        load(path)
    assert_one_line_naming(err, path, field, row)


@pytest.mark.parametrize("field", ["obs", "rews", "next_obs"])
def test_nan_names_file_field_row(tmp_path: Path, field: str) -> None:
    arrays = arrays_of(make_transitions())
    arrays[field] = arrays[field].copy()
    arrays[field][5] = np.nan
    assert_npz_refused(tmp_path / "bad.npz", arrays, field, 5)


def test_inf_in_parquet_names_row(tmp_path: Path) -> None:
    t = make_transitions(discrete=False)
    save_transitions(t, tmp_path / "good.parquet")
    table = pq.read_table(tmp_path / "good.parquet")
    rews = t.rews.copy()
    rews[9] = np.inf
    table = table.set_column(table.column_names.index("rews"), "rews", pa.array(rews))
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(DataError) as err:
        load_transitions(tmp_path / "bad.parquet")
    assert_one_line_naming(err, tmp_path / "bad.parquet", "rews", 9)


def test_float64_overflowing_float32_is_refused(tmp_path: Path) -> None:
    arrays = arrays_of(make_transitions())
    arrays["obs"] = arrays["obs"].astype(np.float64)
    arrays["obs"][2, 1] = 1e300
    assert_npz_refused(tmp_path / "big.npz", arrays, "obs", 2)


def test_missing_field(tmp_path: Path) -> None:
    arrays = arrays_of(make_transitions())
    del arrays["truncated"]
    path = write_npz(tmp_path / "missing.npz", arrays)
    with pytest.raises(DataError, match=r"missing\.npz: field 'truncated' is missing"):
        load_transitions(path)


def test_missing_parquet_column(tmp_path: Path) -> None:
    save_transitions(make_transitions(), tmp_path / "t.parquet")
    table = pq.read_table(tmp_path / "t.parquet").drop_columns(["next_obs"])
    pq.write_table(table, tmp_path / "missing.parquet")
    with pytest.raises(DataError, match=r"missing\.parquet: field 'next_obs' is missing"):
        load_transitions(tmp_path / "missing.parquet")


def test_row_counts_disagree(tmp_path: Path) -> None:
    arrays = arrays_of(make_transitions())
    arrays["next_obs"] = arrays["next_obs"][:-2]
    assert_npz_refused(tmp_path / "short.npz", arrays, "next_obs", N - 2)


def test_observation_shapes_disagree(tmp_path: Path) -> None:
    arrays = arrays_of(make_transitions())
    arrays["next_obs"] = arrays["next_obs"][:, :2]
    assert_npz_refused(tmp_path / "shape.npz", arrays, "next_obs", 0)


def test_segment_lengths_disagree(tmp_path: Path) -> None:
    segments = segments_from_transitions(make_transitions(), 3)
    arrays = {"obs": segments.obs, "acts": segments.acts, "next_obs": segments.next_obs, "rews": segments.rews[:, :2]}
    assert_npz_refused(tmp_path / "segments.npz", arrays, "rews", 0, load=load_segments,
                       match="length 2 but 'obs' has length 3")


def test_nan_in_segment_names_segment_and_step(tmp_path: Path) -> None:
    segments = segments_from_transitions(make_transitions(), 3)
    obs = segments.obs.copy()
    obs[1, 2, 0] = np.nan
    arrays = {"obs": obs, "acts": segments.acts, "next_obs": segments.next_obs, "rews": segments.rews}
    assert_npz_refused(tmp_path / "s.npz", arrays, "obs", 1, load=load_segments, match="row 1 step 2")


def test_wrong_dtypes(tmp_path: Path) -> None:
    arrays = arrays_of(make_transitions())
    arrays["acts"] = np.array([f"a{i}" for i in range(N)])
    path = write_npz(tmp_path / "strings.npz", arrays)
    with pytest.raises(DataError, match=r"strings\.npz: field 'acts' has dtype <U\d+; expected numbers"):
        load_transitions(path)
    arrays = arrays_of(make_transitions())
    arrays["terminated"] = np.arange(N)
    assert_npz_refused(tmp_path / "flags.npz", arrays, "terminated", 2)


def test_pickled_objects_are_refused_not_unpickled(tmp_path: Path) -> None:
    arrays = arrays_of(make_transitions())
    arrays["obs"] = np.array([object() for _ in range(N)], dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays)  # numpy pickles object arrays
    with pytest.raises(DataError, match=r"pickled\.npz: field 'obs' holds Python objects"):
        load_transitions(path)


def test_parquet_ragged_and_null_rows(tmp_path: Path) -> None:
    t = make_transitions()
    base = {name: pa.array(list(getattr(t, name))) for name in ("acts", "rews", "terminated", "truncated")}
    obs = [list(row) for row in t.obs]
    obs[6] = obs[6][:2]
    table = pa.table({**base, "obs": pa.array(obs), "next_obs": pa.array([list(r) for r in t.next_obs])})
    pq.write_table(table, tmp_path / "ragged.parquet")
    with pytest.raises(DataError) as err:
        load_transitions(tmp_path / "ragged.parquet")
    assert_one_line_naming(err, tmp_path / "ragged.parquet", "obs", 6)
    rews = pa.array([float(r) for r in t.rews[:3]] + [None] + [float(r) for r in t.rews[4:]])
    table = pa.table(
        {
            **base,
            "rews": rews,
            "obs": pa.array([list(r) for r in t.obs]),
            "next_obs": pa.array([list(r) for r in t.next_obs]),
        }
    )
    pq.write_table(table, tmp_path / "null.parquet")
    with pytest.raises(DataError) as err:
        load_transitions(tmp_path / "null.parquet")
    assert_one_line_naming(err, tmp_path / "null.parquet", "rews", 3)


def test_other_tools_list_columns_load(tmp_path: Path) -> None:
    t = make_transitions()
    table = pa.table(
        {name: pa.array([list(r) for r in a]) if a.ndim > 1 else pa.array(a) for name, a in arrays_of(t).items()}
    )
    pq.write_table(table, tmp_path / "plain.parquet")
    back = load_transitions(tmp_path / "plain.parquet")
    np.testing.assert_array_equal(back.obs, t.obs)
    assert back.env_id is None


def test_segments_file_is_not_transitions(tmp_path: Path) -> None:
    path = save_segments(segments_from_transitions(make_transitions(), 2), tmp_path / "s.npz")
    with pytest.raises(DataError, match=r"s\.npz: field 'format' is 'rewardkit-segments/1'.*load_segments"):
        load_transitions(path)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_transitions(tmp_path / "absent.npz")
    with pytest.raises(DataError, match="unsupported file type '.csv'"):
        save_transitions(make_transitions(), tmp_path / "t.csv")
    assert not (tmp_path / "t.csv").exists()
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match=r"junk\.npz: not a readable \.npz file"):
        load_transitions(tmp_path / "junk.npz")
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(DataError, match=r"junk\.parquet: not a readable parquet file"):
        load_transitions(tmp_path / "junk.parquet")


def test_failed_save_leaves_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = save_transitions(make_transitions(), tmp_path / "t.npz")
    before = path.read_bytes()

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", crash)
    with pytest.raises(OSError):
        save_transitions(make_transitions(n=5, ends=(4,)), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.npz"]


# --- segments never cross an episode end -----------------------------------------------------------


def test_segment_starts_stay_inside_episodes() -> None:
    t = make_transitions(ends=(4, 11))  # episodes 0..4 and 5..11
    np.testing.assert_array_equal(segment_starts(t, 3), [0, 1, 2, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(segment_starts(t, 6), [5, 6])
    assert segment_starts(t, 8).size == 0
    with pytest.raises(ConfigError, match="segment length 0"):
        segment_starts(t, 0)


def test_segments_tile_each_episode_and_copy_the_steps() -> None:
    t = make_transitions(ends=(4, 11))
    segments = segments_from_transitions(t, 2)
    # episode 0..4 gives starts 0, 2; episode 5..11 gives 5, 7, 9
    np.testing.assert_array_equal(segments.obs[:, 0], t.obs[[0, 2, 5, 7, 9]])
    np.testing.assert_array_equal(segments.rews, t.rews[[[0, 1], [2, 3], [5, 6], [7, 8], [9, 10]]])
    assert isinstance(segments, Segments) and segments.length == 2 and segments.env_id == "Toy-v0"
    np.testing.assert_allclose(segments.returns(), segments.rews.sum(axis=1), rtol=1e-6)
    np.testing.assert_allclose(segments.returns(0.5), 0.5 * segments.rews[:, 0] + segments.rews[:, 1], rtol=1e-6)


def test_explicit_start_crossing_an_episode_end_is_refused() -> None:
    with pytest.raises(ConfigError, match="segment start 3: steps 3..5 cross an episode end"):
        segments_from_transitions(make_transitions(ends=(4, 11)), 3, starts=np.array([0, 3]))


def test_importing_rewardkit_data_leaves_numpy_for_first_use() -> None:
    import subprocess
    import sys

    code = "\n".join(
        [
            "import sys, rewardkit.data as d",
            "before = 'numpy' in sys.modules",
            "d.Transitions",
            "print(before, 'numpy' in sys.modules)",
        ]
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "True"]


@pytest.mark.parametrize("suffix", [".npz", ".parquet"])
def test_image_like_observations_keep_their_shape(tmp_path: Path, suffix: str) -> None:
    t = make_transitions(discrete=False)
    arrays = arrays_of(t)
    arrays["obs"] = np.arange(N * 6, dtype=np.float32).reshape(N, 2, 3)
    arrays["next_obs"] = arrays["obs"] + 1
    wide = Transitions(**arrays)
    back = load_transitions(save_transitions(wide, tmp_path / f"t{suffix}"))
    assert back.obs.shape == (N, 2, 3) and back.acts.shape == (N, 2)
    np.testing.assert_array_equal(back.next_obs, wide.next_obs)
    segments = segments_from_transitions(wide, 3)
    assert load_segments(save_segments(segments, tmp_path / f"s{suffix}")).obs.shape == (len(segments), 3, 2, 3)


def test_empty_record_with_integer_flags() -> None:
    arrays = {k: v[:0] for k, v in arrays_of(make_transitions()).items()}
    arrays["terminated"] = np.zeros(0, dtype=np.int64)
    empty = Transitions(**arrays)
    assert len(empty) == 0 and empty.terminated.dtype == bool
    assert segment_starts(empty, 2).size == 0 and len(segments_from_transitions(empty, 2)) == 0


def test_absorbing_windows_run_past_terminations_only() -> None:
    t = make_transitions(ends=(4, 11))  # episode 0..4 terminated, 5..11 terminated
    np.testing.assert_array_equal(segment_starts(t, 3, absorbing=True), np.arange(12))  # every step may start one
    truncated = Transitions(**{**arrays_of(t), "terminated": np.zeros(12, bool), "truncated": t.terminated})
    np.testing.assert_array_equal(segment_starts(truncated, 3, absorbing=True), segment_starts(t, 3))  # cut: no
    open_end = make_transitions(ends=(4,))  # the last episode has not ended: the data stops there
    np.testing.assert_array_equal(segment_starts(open_end, 3, absorbing=True), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9])


def test_absorbing_padding_repeats_the_terminal_observation_with_zero_reward(tmp_path: Path) -> None:
    t = make_transitions(ends=(4, 11))
    segments = segments_from_transitions(t, 4, starts=np.array([3, 5]), absorbing=True)
    np.testing.assert_array_equal(segments.absorbing, [[False, False, True, True], [False] * 4])
    np.testing.assert_array_equal(segments.obs[0], np.stack([t.obs[3], t.obs[4], t.next_obs[4], t.next_obs[4]]))
    np.testing.assert_array_equal(segments.next_obs[0], np.stack([t.next_obs[3], *[t.next_obs[4]] * 3]))
    np.testing.assert_array_equal(segments.acts[0], [t.acts[3], t.acts[4], 0, 0])
    np.testing.assert_array_equal(segments.rews[0], [t.rews[3], t.rews[4], 0, 0])
    np.testing.assert_array_equal(segments.take(np.array([1, 0])).absorbing, segments.absorbing[::-1])
    for suffix in (".npz", ".parquet"):
        back = load_segments(save_segments(segments, tmp_path / f"s{suffix}"))
        np.testing.assert_array_equal(back.absorbing, segments.absorbing)
        assert fingerprint(back) == fingerprint(segments)


def test_segments_without_padding_keep_their_files_and_fingerprints(tmp_path: Path) -> None:
    segments = segments_from_transitions(make_transitions(), 2)
    assert not segments.absorbing.any() and segments.absorbing.shape == segments.rews.shape
    assert "absorbing" not in np.load(save_segments(segments, tmp_path / "s.npz")).files  # as before the flag
    plain = Segments(segments.obs, segments.acts, segments.next_obs, segments.rews, segments.env_id)
    assert fingerprint(plain) == fingerprint(segments)
    padded = segments_from_transitions(make_transitions(), 2, starts=np.array([4]), absorbing=True)
    assert fingerprint(padded) != fingerprint(segments_from_transitions(make_transitions(), 2, starts=np.array([3])))
