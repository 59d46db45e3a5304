"""Where bytes live: local paths or s3:// URLs (S3_ENDPOINT_URL selects S3-compatible stores) for inputs,
and the output root with its published units."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import urllib.parse
from contextlib import contextmanager
from typing import Any, Iterator, Optional

INDEX = "index.json"  # MDS's shard index; the root's is written last: a root without one is incomplete
MARKER = "_unit.json"  # a unit's counts, keys and MDS index, written last: a unit without one is incomplete


def is_remote(url: str) -> bool:
    """An object store URL, not a local path (file:// is local)."""
    return "://" in url and not url.startswith("file://")


def local_path(url: str) -> str:
    return url[len("file://"):] if url.startswith("file://") else url


def _s3():
    import boto3
    return boto3.session.Session().client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None)


def _split_s3(url: str) -> tuple[str, str]:
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme != "s3":
        raise ValueError(f"unsupported object store scheme in {url!r}: only local paths and s3:// are supported")
    return parsed.netloc, parsed.path.lstrip("/")


def s3_list(url: str) -> list[str]:
    """Every object URL under the s3:// prefix `url`."""
    bucket, prefix = _split_s3(url)
    out = []
    for page in _s3().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [f"s3://{bucket}/{o['Key']}" for o in page.get("Contents", [])]
    return out


@contextmanager
def local_copy(url: str) -> Iterator[str]:
    """A local path for an input: the path itself, or a temporary download of an s3:// object."""
    if not is_remote(url):
        yield local_path(url)
        return
    bucket, key = _split_s3(url)
    fd, path = tempfile.mkstemp(prefix="convert-in-", suffix="-" + os.path.basename(key))
    os.close(fd)
    try:
        _s3().download_file(bucket, key, path)
        yield path
    finally:
        os.remove(path)


def read_bytes(url: str) -> Optional[bytes]:
    """The bytes of a small file (local or s3://), or None if there is none."""
    if not is_remote(url):
        path = local_path(url)
        if not os.path.isfile(path):
            return None
        with open(path, "rb") as f:
            return f.read()
    bucket, key = _split_s3(url)
    s3 = _s3()
    try:
        return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        return None


def input_version(url: str) -> str:
    """Changes when the input file does: size and mtime locally, the ETag on S3."""
    if is_remote(url):
        bucket, key = _split_s3(url)
        return _s3().head_object(Bucket=bucket, Key=key)["ETag"]
    st = os.stat(local_path(url))
    return f"{st.st_size}:{st.st_mtime_ns}"


class Output:
    """The output root: a local folder or an s3:// prefix (S3_ENDPOINT_URL selects S3-compatible stores)."""

    def __init__(self, url: str):
        self.url = url.rstrip("/")
        self.remote = is_remote(self.url)
        if self.remote:
            _split_s3(self.url)
        else:
            self.url = os.path.abspath(local_path(self.url))
            if os.path.exists(self.url) and not os.path.isdir(self.url):
                raise ValueError(f"--output {self.url} is a file, not a folder")

    def join(self, *parts: str) -> str:
        return "/".join([self.url, *parts]) if self.remote else os.path.join(self.url, *parts)

    def read_json(self, rel: str) -> Optional[dict]:
        data = read_bytes(self.join(rel))
        return None if data is None else json.loads(data)

    def write_json(self, rel: str, obj: Any) -> None:
        data = json.dumps(obj, indent=1, sort_keys=True).encode()
        if self.remote:
            bucket, key = _split_s3(self.join(rel))
            _s3().put_object(Bucket=bucket, Key=key, Body=data)
            return
        path = self.join(rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def remove(self, rel: str) -> None:
        if self.remote:
            bucket, key = _split_s3(self.join(rel))
            _s3().delete_object(Bucket=bucket, Key=key)
        elif os.path.exists(self.join(rel)):
            os.remove(self.join(rel))

    def remove_unit(self, unit: str) -> None:
        """Delete a published unit, its marker first (so it never looks complete half-deleted)."""
        self.remove(f"parts/{unit}/{MARKER}")
        if self.remote:
            bucket, _ = _split_s3(self.url)
            for url in s3_list(self.join("parts", unit) + "/"):
                _s3().delete_object(Bucket=bucket, Key=_split_s3(url)[1])
        else:
            shutil.rmtree(self.join("parts", unit), ignore_errors=True)

    def done_units(self) -> set[str]:
        """Unit ids whose marker is published."""
        if self.remote:
            prefix = self.join("parts") + "/"
            return {u[len(prefix):-len(MARKER) - 1] for u in s3_list(prefix) if u.endswith("/" + MARKER)}
        parts = self.join("parts")
        if not os.path.isdir(parts):
            return set()
        return {d for d in os.listdir(parts)
                if not d.startswith(".") and os.path.exists(os.path.join(parts, d, MARKER))}

    def publish(self, staged: str, unit: str) -> None:
        """Move a finished staged unit folder (marker included) to parts/<unit>, the marker last."""
        if self.remote:
            bucket, prefix = _split_s3(self.join("parts", unit))
            s3 = _s3()
            # A stale marker must not vouch for shards being overwritten.
            s3.delete_object(Bucket=bucket, Key=f"{prefix}/{MARKER}")
            names = sorted(os.listdir(staged), key=lambda n: n == MARKER)
            for name in names:
                s3.upload_file(os.path.join(staged, name), bucket, f"{prefix}/{name}")
            shutil.rmtree(staged)
            return
        final = self.join("parts", unit)
        if os.path.exists(final):
            shutil.rmtree(final)
        os.rename(staged, final)
        _fsync_dir(os.path.dirname(final))


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
