r"""Transitions and segments of Gymnasium roll-outs: records, ``.npz``/``.parquet`` files, checks, fingerprint.

A :class:`Transitions` record holds N steps ``(s, a, r, s', terminated, truncated)`` as numpy
arrays, in the order they happened: the steps of one episode are consecutive, and an episode
ends at a step whose ``terminated`` or ``truncated`` is set (Gymnasium's two ways to stop:
the task ended, or it was cut, e.g. by a time limit). ``next_obs`` of an episode's last step
is the observation the episode really ended in, never the reset observation of the next one.
A :class:`Segments` record holds M windows of L consecutive steps that stay inside one episode
(imitation's "fragments"); :func:`segments_from_transitions` cuts them. With ``absorbing=True``
a window may also run past the end of an episode that *terminated*: the steps after it are
padding in an absorbing state (the terminal observation, action 0, true reward 0, flagged in
``Segments.absorbing``), so a fragment in which the task failed (CartPole's pole fell) has a lower
true return than one in which it went on, instead of being impossible to draw.

Files (by suffix, written atomically through :func:`rewardkit.store.atomic.write_atomically`):

* ``.npz``: one array per field, plus ``format`` (``"rewardkit-transitions/1"`` or
  ``"rewardkit-segments/1"``) and ``env_id`` as 0-d unicode arrays. Read with
  ``allow_pickle=False``: a file holding Python objects is refused, never unpickled.
* ``.parquet``: one row per transition (per segment); a field with trailing dimensions is a
  fixed-size list column of its flattened values, and the trailing shapes, ``format`` and
  ``env_id`` are in the schema metadata under ``b"rewardkit"`` (list columns written by other
  tools load too, when their rows have equal lengths).

Every record is checked when it is built or read (:func:`check_arrays`): a missing field,
row counts or segment lengths that disagree, a dtype that is not numeric (or not boolean for
the flags), or a NaN or infinite value raise :class:`~rewardkit.errors.DataError` with one line
naming the file, the field and the first bad row. Dtypes are normalised: observations and
rewards float32, integer actions int64 (Discrete), other actions float32 (Box), flags bool.

The fingerprint (:func:`fingerprint`) is the SHA-256 of one canonical serialization defined
here: the format tag, the environment id, then per field its name, dtype, shape and
little-endian bytes. Unlike a text dataset's fingerprint it depends on the order of the
steps, because the order is content here (it says which steps form an episode); like it, it
does not depend on the file name or format: the same arrays as ``.npz`` and ``.parquet`` have
the same fingerprint.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rewardkit.errors import ConfigError, DataError
from rewardkit.store.atomic import write_atomically

TRANSITIONS_FORMAT = "rewardkit-transitions/1"
SEGMENTS_FORMAT = "rewardkit-segments/1"
SUFFIXES = (".npz", ".parquet")
"""File types :func:`save_transitions` and :func:`load_transitions` understand."""

_FLOAT_FIELDS = ("obs", "next_obs", "rews")
_FLAG_FIELDS = ("terminated", "truncated", "absorbing")
_OPTIONAL_FIELDS = ("absorbing",)  # all False when missing
_PARQUET_KEY = b"rewardkit"


class _ArrayRecord:
    """What :class:`Transitions` and :class:`Segments` share: arrays checked and normalised on construction."""

    _KIND: ClassVar[str]  # check_arrays' kind
    rews: np.ndarray

    def __post_init__(self) -> None:
        arrays = {name: getattr(self, name) for name in _array_fields(type(self))}
        for name, array in check_arrays(arrays, kind=self._KIND, where=type(self).__name__).items():
            object.__setattr__(self, name, array)

    def __len__(self) -> int:
        return len(self.rews)


@dataclass(frozen=True, eq=False)
class Transitions(_ArrayRecord):
    """N environment steps, in the order they happened (episodes consecutive).

    Attributes:
        obs: ``(N, *obs_shape)`` float32, the observation the action was taken in.
        acts: ``(N, *act_shape)``; int64 ``(N,)`` for a Discrete action space, float32 for Box.
        rews: ``(N,)`` float32, the environment's true reward.
        next_obs: ``(N, *obs_shape)`` float32, the observation after the step; for an episode's
            last step the episode's true last observation (SB3's ``terminal_observation``), not
            the reset observation of the next episode.
        terminated: ``(N,)`` bool, the episode ended in a terminal state of the task.
        truncated: ``(N,)`` bool, the episode was cut without reaching one (time limit, or the
            end of a collection budget). Gymnasium allows both flags on one step; rewardkit's
            roll-outs set ``truncated`` only when not ``terminated`` (SB3's ``TimeLimit.truncated``).
        env_id: The Gymnasium id of the environment (``"CartPole-v1"``), if known.

    Raises:
        DataError: On construction, if a field is missing, the row counts or the observation
            shapes disagree, a dtype is not numeric, or a value is NaN or infinite.
    """

    obs: np.ndarray
    acts: np.ndarray
    rews: np.ndarray
    next_obs: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    env_id: str | None = None
    _KIND = "transitions"

    @property
    def dones(self) -> np.ndarray:
        """``(N,)`` bool: the step ends its episode (``terminated | truncated``)."""
        return self.terminated | self.truncated


@dataclass(frozen=True, eq=False)
class Segments(_ArrayRecord):
    """M windows of L consecutive steps, each inside one episode (imitation's "fragments").

    Attributes:
        obs: ``(M, L, *obs_shape)`` float32.
        acts: ``(M, L, *act_shape)``; int64 for Discrete actions, float32 for Box.
        next_obs: ``(M, L, *obs_shape)`` float32.
        rews: ``(M, L)`` float32, the true reward of each step.
        env_id: The Gymnasium id of the environment, if known.
        absorbing: ``(M, L)`` bool, the step is padding after its episode terminated (its
            reward is 0 by definition, for the teacher and for the learned return); all
            False when not given (and then not written to files, so older files and
            fingerprints are unchanged).

    Raises:
        DataError: On construction, if a field is missing, the segment counts or lengths
            disagree, a dtype is not numeric, or a value is NaN or infinite.
    """

    obs: np.ndarray
    acts: np.ndarray
    next_obs: np.ndarray
    rews: np.ndarray
    env_id: str | None = None
    absorbing: np.ndarray | None = None
    _KIND = "segments"

    @property
    def length(self) -> int:
        """L, the number of steps in every segment."""
        return self.rews.shape[1]

    def returns(self, gamma: float = 1.0) -> np.ndarray:
        """``(M,)`` float64: each segment's sum of true rewards, step t weighted by ``gamma ** (L - 1 - t)``.

        ``gamma = 1`` is the plain sum; ``gamma < 1`` discounts from the end of the segment
        (B-Pref's myopic teacher, Lee et al. 2021, weighs the last steps most).
        """
        weights = float(gamma) ** np.arange(self.length - 1, -1, -1, dtype=np.float64)
        return self.rews.astype(np.float64) @ weights

    def take(self, indices: np.ndarray) -> Segments:
        """The segments at ``indices`` (``(K,)`` int or ``(M,)`` bool), as a new record."""
        return Segments(self.obs[indices], self.acts[indices], self.next_obs[indices], self.rews[indices], self.env_id,
                        self.absorbing[indices])


Record = Transitions | Segments


def _array_fields(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls) if f.name != "env_id")


def _kind_of(record: Record) -> tuple[str, str]:
    return ("transitions", TRANSITIONS_FORMAT) if isinstance(record, Transitions) else ("segments", SEGMENTS_FORMAT)


# ---------------------------------------------------------------------------------------------
# Checks


def check_arrays(arrays: Mapping[str, Any], *, kind: str, where: str, prefix: str = "") -> dict[str, np.ndarray]:
    """Check and normalise the arrays of a transitions or segments record.

    Args:
        arrays: Field name -> array-like, for the fields of :class:`Transitions`
            (``kind="transitions"``) or :class:`Segments` (``kind="segments"``); other keys
            are ignored.
        kind: ``"transitions"`` (leading dimension N) or ``"segments"`` (leading ``(M, L)``).
        where: What to name in messages: a file path, or the record type.
        prefix: Put before field names in messages (``"fragments1."`` for a record stored
            inside a larger file).

    Returns:
        The arrays with normalised dtypes (float32 observations and rewards, int64 or float32
        actions, bool flags), in field order.

    Raises:
        DataError: ``"<where>: field '<name>' row <i>: <what is wrong>; <what was expected>"``
            for the first problem found: a missing field, a dtype that is not numeric (or not
            0/1 for a flag), too few dimensions, a row count or segment length that differs
            from ``obs``'s, observation shapes that differ, a NaN or infinite value.
    """
    names = _array_fields(Transitions if kind == "transitions" else Segments)
    lead = 1 if kind == "transitions" else 2
    out: dict[str, np.ndarray] = {}
    for name in names:
        if name in _OPTIONAL_FIELDS and arrays.get(name) is None:
            continue
        if name not in arrays or arrays[name] is None:
            raise DataError(f"{where}: field '{prefix}{name}' is missing; {kind} need the fields {', '.join(names)}")
        out[name] = _normalise_dtype(np.asarray(arrays[name]), name, where, prefix)
    for name in names:
        if name not in out:  # an optional flag not given: False everywhere
            out[name] = np.zeros(out["rews"].shape, dtype=bool)
    for name, array in out.items():
        exact = name == "rews" or name in _FLAG_FIELDS
        if array.ndim < lead or (exact and array.ndim != lead):
            want = ("(M, L)" if lead == 2 else "(N,)") if exact else ("(M, L, ...)" if lead == 2 else "(N, ...)")
            raise DataError(f"{where}: field '{prefix}{name}' has shape {array.shape}; expected {want}")
    reference = out["obs"]
    for name, array in out.items():
        if array.shape[0] != reference.shape[0]:
            first = min(array.shape[0], reference.shape[0])
            raise DataError(
                f"{where}: field '{prefix}{name}' row {first}: has {array.shape[0]} rows but '{prefix}obs' has "
                f"{reference.shape[0]}; every field needs one row per {kind[:-1]}"
            )
        if lead == 2 and array.shape[1] != reference.shape[1]:
            raise DataError(
                f"{where}: field '{prefix}{name}' row 0: segments of length {array.shape[1]} but '{prefix}obs' "
                f"has length {reference.shape[1]}; every field of a segment needs the same number of steps"
            )
    if out["next_obs"].shape[lead:] != reference.shape[lead:]:
        raise DataError(
            f"{where}: field '{prefix}next_obs' row 0: observations of shape {out['next_obs'].shape[lead:]} but "
            f"'{prefix}obs' has {reference.shape[lead:]}; both come from the same observation space"
        )
    for name, array in out.items():
        if array.dtype.kind == "f":
            _check_finite(array, prefix + name, where, lead)
    return out


def _normalise_dtype(array: np.ndarray, name: str, where: str, prefix: str) -> np.ndarray:
    kind = array.dtype.kind
    if name in _FLAG_FIELDS:
        if kind == "b" or array.size == 0:
            return array.astype(bool, copy=False)
        if kind not in "iu":
            raise DataError(f"{where}: field '{prefix}{name}' has dtype {array.dtype}; expected bool")
        bad = np.flatnonzero(~np.isin(array, (0, 1)))
        if bad.size:
            index = np.unravel_index(bad[0], array.shape)
            raise DataError(
                f"{where}: field '{prefix}{name}' row {index[0]}: value {array[index]}; expected a boolean (0/1)"
            )
        return array.astype(bool)
    if kind not in "iuf":
        raise DataError(
            f"{where}: field '{prefix}{name}' has dtype {array.dtype}; expected numbers "
            f"({'int64 or float32' if name == 'acts' else 'float32'})"
        )
    if name == "acts" and kind in "iu":
        return array.astype(np.int64, copy=False)
    with np.errstate(over="ignore"):
        return array.astype(np.float32, copy=False)


def _check_finite(array: np.ndarray, name: str, where: str, lead: int) -> None:
    bad = ~np.isfinite(array)
    if not bad.any():
        return
    index = np.unravel_index(np.flatnonzero(bad)[0], array.shape)
    step = f" step {index[1]}" if lead == 2 else ""
    raise DataError(
        f"{where}: field '{name}' row {index[0]}{step}: value {array[index]} (NaN or infinite in float32); "
        "every observation, action and reward must be finite"
    )


# ---------------------------------------------------------------------------------------------
# Segments from transitions


def segment_starts(transitions: Transitions, length: int, *, absorbing: bool = False) -> np.ndarray:
    """Every index i such that steps ``i .. i + length - 1`` lie in one episode.

    Args:
        transitions: The steps, episodes consecutive.
        length: L, the number of steps per segment (at least 1).
        absorbing: Also every i whose window runs past the end of an episode that
            terminated (the rest of the window is absorbing padding); never past a
            truncation (the task went on there, unseen) or the last step.

    Returns:
        ``(K,)`` int64, ascending. A window may end at an episode's last step, and runs past
        it only with ``absorbing`` after a termination.

    Raises:
        ConfigError: If ``length`` is below 1.
    """
    if length < 1:
        raise ConfigError(f"segment length {length}: must be at least 1")
    starts = np.arange(len(transitions), dtype=np.int64)
    last = _episode_last_step(transitions)
    fits = starts + length - 1 <= last
    if absorbing:
        fits |= transitions.terminated[last]
    return starts[fits]


def _episode_last_step(transitions: Transitions) -> np.ndarray:
    """``(N,)`` int64: for each step, the index of its episode's last step (the last step of all if none ends)."""
    n = len(transitions)
    ends = np.flatnonzero(transitions.dones)
    if not ends.size or ends[-1] != n - 1:
        ends = np.append(ends, n - 1)
    return ends[np.searchsorted(ends, np.arange(n))].astype(np.int64)


def segments_from_transitions(transitions: Transitions, length: int, starts: np.ndarray | None = None, *,
                              absorbing: bool = False) -> Segments:
    """Cut windows of ``length`` consecutive steps that do not cross an episode end.

    Args:
        transitions: The steps, episodes consecutive.
        length: L, the steps per segment.
        starts: ``(M,)`` first step of each segment; each must be in
            :func:`segment_starts` (with the same ``absorbing``). Default: every episode tiled
            from its first step by non-overlapping windows (a last partial window is dropped,
            unless ``absorbing`` pads it after a termination).
        absorbing: Let windows run past a terminated episode's end, padded with absorbing
            steps: observation and next observation the terminal observation, action 0 (all
            zeros for Box actions), true reward 0, ``Segments.absorbing`` True.

    Returns:
        The M segments, ``env_id`` copied.

    Raises:
        ConfigError: If ``length`` is below 1, or a start's window would cross an episode end
            or run past the last step (the message names the first such start).
    """
    valid = segment_starts(transitions, length, absorbing=absorbing)
    if starts is None:
        dones = transitions.dones
        episode = np.concatenate([[0], np.cumsum(dones)[:-1]]).astype(np.int64)  # episode of each step
        first_step = np.flatnonzero(np.concatenate([[True], dones[:-1]]))  # first step of each episode
        offset = np.arange(len(transitions)) - first_step[episode] if len(transitions) else episode
        starts = valid[offset[valid] % length == 0]
    starts = np.asarray(starts, dtype=np.int64)
    outside = np.flatnonzero(~np.isin(starts, valid))
    if outside.size:
        first = starts[outside[0]]
        raise ConfigError(
            f"segment start {first}: steps {first}..{first + length - 1} cross an episode end or run past "
            f"the last step ({len(transitions)} steps); pick starts from segment_starts()"
        )
    index = starts[:, None] + np.arange(length)
    last = _episode_last_step(transitions)[starts][:, None]
    padding = index > last
    index = np.minimum(index, last)
    obs, acts, rews = transitions.obs[index], transitions.acts[index], transitions.rews[index]
    next_obs = transitions.next_obs[index]
    if padding.any():
        obs[padding] = next_obs[padding]  # the terminal observation, from then on
        acts[padding] = 0
        rews[padding] = 0
    return Segments(obs=obs, acts=acts, next_obs=next_obs, rews=rews, env_id=transitions.env_id, absorbing=padding)


# ---------------------------------------------------------------------------------------------
# Fingerprint


def fingerprint(record: Record) -> str:
    """The SHA-256 hex digest (64 characters) of a record's canonical serialization.

    The bytes hashed: the format tag and the environment id (empty if unknown), one line
    each, then per field in declaration order a line ``name dtype shape`` (dtype as
    little-endian ``numpy`` string, e.g. ``<f4``) followed by the array's little-endian
    C-order bytes. Equal arrays give equal fingerprints whatever the file they came from.
    """
    _, tag = _kind_of(record)
    digest = hashlib.sha256()
    digest.update(f"{tag}\n{record.env_id or ''}\n".encode())
    for name, array in record_arrays(record).items():
        little = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
        digest.update(f"{name} {little.dtype.str} {list(array.shape)}\n".encode())
        digest.update(little.tobytes())
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# Files


def save_transitions(transitions: Transitions, path: str | Path) -> Path:
    """Write transitions to ``path`` (``.npz`` or ``.parquet`` by suffix) in one atomic rename.

    Raises:
        DataError: If the suffix is neither ``.npz`` nor ``.parquet``.
    """
    return _save(transitions, Path(path))


def load_transitions(path: str | Path) -> Transitions:
    """Read and check transitions written by :func:`save_transitions` (or shaped like them).

    Raises:
        DataError: One line naming the file, the field and the first bad row: no such file,
            unsupported suffix, unreadable file, a segments file, Python objects in a
            ``.npz``, or any problem :func:`check_arrays` finds.
    """
    arrays, env_id = _load(Path(path), "transitions")
    return Transitions(**arrays, env_id=env_id)


def save_segments(segments: Segments, path: str | Path) -> Path:
    """Write segments to ``path`` (``.npz`` or ``.parquet`` by suffix) in one atomic rename.

    Raises:
        DataError: If the suffix is neither ``.npz`` nor ``.parquet``.
    """
    return _save(segments, Path(path))


def load_segments(path: str | Path) -> Segments:
    """Read and check segments written by :func:`save_segments`.

    Raises:
        DataError: As :func:`load_transitions`; lengths that disagree between fields name the field.
    """
    arrays, env_id = _load(Path(path), "segments")
    return Segments(**arrays, env_id=env_id)


def record_arrays(record: Record, prefix: str = "") -> dict[str, np.ndarray]:
    """A record's arrays by field name (each prefixed), for writing it inside a larger ``.npz``.

    An optional flag that is False everywhere (``Segments.absorbing`` without padding) is
    left out, so files and fingerprints of records without it are what they were before it existed.
    """
    return {prefix + name: getattr(record, name) for name in _array_fields(type(record))
            if name not in _OPTIONAL_FIELDS or getattr(record, name).any()}


def write_npz(path: Path, arrays: Mapping[str, np.ndarray], meta: Mapping[str, str]) -> Path:
    """Write numeric ``arrays`` and string ``meta`` (as 0-d unicode arrays) to ``path`` atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{key: np.str_(value) for key, value in meta.items()})
    write_atomically(path, buffer.getvalue())
    return path


def read_npz(path: Path) -> dict[str, np.ndarray]:
    """Every array of a ``.npz`` file, read without unpickling.

    Raises:
        DataError: If the file is missing or not a readable ``.npz``, or an entry holds
            Python objects (the message names the entry).
    """
    _require_file(path)
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npz file ({err}); write it with numpy.savez") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, not an .npz archive of named fields; use numpy.savez")
    arrays: dict[str, np.ndarray] = {}
    with archive:
        for key in archive.files:
            try:
                arrays[key] = archive[key]
            except ValueError:
                raise DataError(
                    f"{path}: field '{key}' holds Python objects; rewardkit reads numeric arrays only "
                    "(it never unpickles), so save plain numbers"
                ) from None
            except Exception as err:  # zipfile.BadZipFile, zlib.error, ...: a damaged file
                raise DataError(f"{path}: field '{key}' is unreadable ({err}); the file is damaged") from None
    return arrays


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type '{suffix or 'no extension'}'; use one of {', '.join(SUFFIXES)}")
    return suffix


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: {'is a folder' if path.exists() else 'no such file'}; pass a .npz or .parquet file")


def _save(record: Record, path: Path) -> Path:
    kind, tag = _kind_of(record)
    meta = {"format": tag, "env_id": record.env_id or ""}
    if _suffix(path) == ".npz":
        return write_npz(path, record_arrays(record), meta)
    write_atomically(path, _parquet_bytes(record, meta))
    return path


def _load(path: Path, kind: str) -> tuple[dict[str, np.ndarray], str | None]:
    if _suffix(path) == ".npz":
        arrays = read_npz(path)
        meta = {key: str(arrays.pop(key)) for key in ("format", "env_id") if key in arrays}
    else:
        arrays, meta = _read_parquet(path, kind)
    _check_format(path, meta.get("format"), kind)
    return check_arrays(arrays, kind=kind, where=str(path)), meta.get("env_id") or None


def _check_format(path: Path, tag: str | None, kind: str) -> None:
    want = TRANSITIONS_FORMAT if kind == "transitions" else SEGMENTS_FORMAT
    if tag is None or tag == want:
        return
    other = {TRANSITIONS_FORMAT: "transitions (load_transitions)", SEGMENTS_FORMAT: "segments (load_segments)"}
    raise DataError(f"{path}: field 'format' is '{tag}', not '{want}'; the file holds {other.get(tag, 'other data')}")


def _parquet_bytes(record: Record, meta: Mapping[str, str]) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns, shapes = {}, {}
    for name, array in record_arrays(record).items():
        trailing = array.shape[1:]  # a segment's row is (L, ...)
        shapes[name] = list(trailing)
        if trailing:
            flat = pa.array(array.reshape(-1))
            columns[name] = pa.FixedSizeListArray.from_arrays(flat, int(np.prod(trailing)))
        else:
            columns[name] = pa.array(array)
    table = pa.table(columns)
    table = table.replace_schema_metadata({_PARQUET_KEY: json.dumps({**meta, "shapes": shapes}).encode()})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()


def _read_parquet(path: Path, kind: str) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    _require_file(path)
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as err:  # pyarrow.ArrowInvalid and kin: not a parquet file
        raise DataError(f"{path}: not a readable parquet file ({err})") from None
    raw = (table.schema.metadata or {}).get(_PARQUET_KEY)
    meta = json.loads(raw) if raw else {}
    shapes = meta.pop("shapes", {})
    arrays = {name: _column_array(table.column(name), name, shapes.get(name), path) for name in table.column_names}
    return arrays, meta


def _column_array(column: Any, name: str, shape: list[int] | None, path: Path) -> np.ndarray:
    """A parquet column as ``(rows, *shape)``: list columns must have equal lengths per row."""
    import pyarrow as pa
    import pyarrow.compute as pc

    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if column.null_count:
        row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
        raise DataError(f"{path}: field '{name}' row {row}: missing value (null); every row needs a value")
    rows, dims = len(column), []
    values = column
    while (
        pa.types.is_list(values.type) or pa.types.is_large_list(values.type) or pa.types.is_fixed_size_list(values.type)
    ):
        lengths = pc.list_value_length(values).to_numpy(zero_copy_only=False)
        if lengths.size and (lengths != lengths[0]).any():
            bad = int(np.flatnonzero(lengths != lengths[0])[0])
            row = bad // int(np.prod(dims))  # entries per row at this depth
            raise DataError(
                f"{path}: field '{name}' row {row}: a list of {lengths[bad]} values where row 0 has "
                f"{lengths[0]}; every row needs the same shape"
            )
        dims.append(int(lengths[0]) if lengths.size else 0)
        values = values.flatten()
        if values.null_count:
            flat_row = int(np.flatnonzero(values.is_null().to_numpy(zero_copy_only=False))[0])
            raise DataError(
                f"{path}: field '{name}' row {flat_row // int(np.prod(dims))}: missing value (null) "
                "inside the list; every value must be a number"
            )
    array = values.to_numpy(zero_copy_only=False)
    if shape is not None and int(np.prod(shape)) == int(np.prod(dims)):
        dims = list(shape)
    return array.reshape(rows, *dims)
