"""The remotes a repository knows by name, in its ``config.json``.

``config.json`` gains the key (optional; a repository without it reads as before)::

    "remotes": {"origin": {"url": "s3://team-models/rm", "endpoint_url": "http://127.0.0.1:9000"}}

A directory remote's URL is stored as an absolute path, so the repository reaches it from any
working folder. Credentials are never stored (see :func:`storage_options`).

Every change rewrites ``config.json`` atomically (:func:`~rewardkit.store.atomic.write_atomically`),
so a reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec

from rewardkit.errors import StoreError
from rewardkit.store.config import CONFIG_FILE, read_config, write_config
from rewardkit.store.refs import REMOTES, check_ref_name

if TYPE_CHECKING:
    from rewardkit.store.remote import Remote
    from rewardkit.store.repository import Repository

REMOTES_KEY = "remotes"
#: Read by boto3 and s3fs alike; honoured here too so a stored remote without an endpoint follows it.
ENV_ENDPOINT = "AWS_ENDPOINT_URL"
#: fsspec protocols that take an ``endpoint_url`` storage option.
S3_PROTOCOLS = ("s3", "s3a")


def normalize_url(url: str) -> str:
    """Return ``url`` checked, with a local path made absolute (``../models`` -> ``/home/me/models``).

    Raises:
        StoreError: If the URL is empty, or fsspec knows no filesystem for its scheme (or
            the package implementing it is not installed): one line naming the scheme.
    """
    url = url.strip()
    if not url:
        raise StoreError("empty remote URL: give a directory path or an fsspec URL such as s3://bucket/prefix")
    protocol, _ = fsspec.core.split_protocol(url)
    if protocol is None:
        return str(Path(url).expanduser().resolve())
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        raise StoreError(f"unknown URL scheme {protocol!r} in {url!r}: fsspec knows no such filesystem "
                         "(use a directory path, s3://bucket/prefix, or a scheme of an installed fsspec package)"
                         ) from None
    except ImportError as exc:
        detail = str(exc).strip().partition("\n")[0]
        raise StoreError(f"URL scheme {protocol!r} of {url!r} needs a package that is not installed: {detail}"
                         ) from None
    if protocol == "file":
        return str(Path(url.removeprefix("file://")).expanduser().resolve())
    return url


def storage_options(url: str, endpoint_url: str | None = None) -> dict[str, Any]:
    """Return the fsspec storage options for ``url``: for S3, ``endpoint_url`` or ``$AWS_ENDPOINT_URL``.

    Credentials are not stored: s3fs reads ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``,
    ``AWS_PROFILE`` or an instance role, as the AWS command line does.
    """
    protocol, _ = fsspec.core.split_protocol(url)
    endpoint = endpoint_url or os.environ.get(ENV_ENDPOINT)
    return {"endpoint_url": endpoint} if protocol in S3_PROTOCOLS and endpoint else {}


def list_remotes(repo: Repository) -> dict[str, dict[str, Any]]:
    """Return remote name -> ``{"url": ..., "endpoint_url": ...}``, sorted by name.

    Raises:
        StoreError: If ``config.json``'s ``remotes`` is not a mapping of names to ``{"url": ...}``.
    """
    remotes = read_config(repo.path).get(REMOTES_KEY, {})
    if not isinstance(remotes, dict) or not all(isinstance(v, dict) and "url" in v for v in remotes.values()):
        raise StoreError(f"{repo.path / CONFIG_FILE}: field {REMOTES_KEY!r} is damaged: expected "
                         '{"name": {"url": "...", "endpoint_url": null}, ...}')
    return {name: {"url": v["url"], "endpoint_url": v.get("endpoint_url")} for name, v in sorted(remotes.items())}


def add_remote(repo: Repository, name: str, url: str, *, endpoint_url: str | None = None) -> None:
    """Name a remote: ``rewardkit remote add NAME URL``. Nothing is contacted yet.

    Args:
        repo: The repository.
        name: Remote name, e.g. ``origin`` (a valid ref name: it prefixes ``refs/remotes/<name>/``).
        url: A directory path (stored absolute) or an fsspec URL, e.g. ``s3://bucket/prefix``.
        endpoint_url: For S3-compatible storage other than AWS (MinIO, moto, Ceph), its URL;
            default ``$AWS_ENDPOINT_URL`` when the remote is used.

    Raises:
        RefError: If ``name`` is not a valid ref name.
        StoreError: If a remote of that name exists, or fsspec knows no filesystem for the URL's
            scheme; ``config.json`` is then unchanged.
    """
    check_ref_name(name, "remote")
    url = normalize_url(url)
    config = read_config(repo.path)
    remotes = list_remotes(repo)
    if name in remotes:
        raise StoreError(f"remote {name!r} already exists ({remotes[name]['url']}); "
                         f"`rewardkit remote rm {name}` first to change its URL")
    config[REMOTES_KEY] = remotes | {name: {"url": url, "endpoint_url": endpoint_url}}
    write_config(repo.path, config)


def remove_remote(repo: Repository, name: str) -> None:
    """Forget remote ``name`` and delete its remote-tracking refs ``refs/remotes/<name>/*``.

    The refs go first (each by compare-and-swap, written to the reflog), then the entry in
    ``config.json``; commits and objects stay until ``rewardkit gc``.

    Raises:
        StoreError: If there is no such remote.
    """
    remotes = list_remotes(repo)
    if name not in remotes:
        raise StoreError(_unknown(name, remotes))
    for ref, id in repo.refs.as_dict(f"{REMOTES}{name}/").items():
        repo.refs.set_ref(ref, None, id, f"remote: removed {name}")
    config = read_config(repo.path)
    config[REMOTES_KEY] = {n: v for n, v in remotes.items() if n != name}
    write_config(repo.path, config)


def open_remote(repo: Repository, name: str) -> Remote:
    """Return the :class:`~rewardkit.store.remote.location.Remote` named ``name`` in ``config.json``.

    Raises:
        StoreError: ``unknown remote 'x' (known: origin)``, or the URL's scheme is unknown.
    """
    from rewardkit.store.remote import Remote

    remotes = list_remotes(repo)
    if name not in remotes:
        raise StoreError(_unknown(name, remotes))
    url = remotes[name]["url"]
    return Remote(name, url, **storage_options(url, remotes[name]["endpoint_url"]))


def _unknown(name: str, remotes: dict[str, Any]) -> str:
    known = ", ".join(remotes) or "none; add one with `rewardkit remote add NAME URL`"
    return f"unknown remote {name!r} (known: {known})"
