"""Checks of the object-store URLs a run names, made before anything heavy starts: the scheme is one the
reader supports, the bucket is named, and on S3 that credentials exist and the bucket / MDS index / checkpoint
can be reached. Each failure is one line naming the config key."""

from __future__ import annotations

import os
from typing import Iterator

from recipe.config import TrainConfig

# What reads each kind of URL: Streaming reads MDS streams, Composer reads and writes checkpoints.
STREAM_SCHEMES = {"s3", "gs", "oci", "azure", "azure-dl", "dbfs", "hf", "sftp"}
CHECKPOINT_SCHEMES = {"s3", "gs", "oci", "azure", "dbfs"}


class PreflightError(Exception):
    """One line: which key, which URL, what is wrong."""


def _urls(cfg: TrainConfig) -> Iterator[tuple[str, str, str]]:
    """(config key, URL, what is expected there): 'mds', 'folder' or 'file'."""
    for loader_key in ("train_data", "eval_data"):
        data = getattr(cfg, loader_key)
        for source, src in ({} if data is None else data.sources).items():
            for name, stream in src.streams.items():
                yield f"{loader_key}.sources.{source}.streams.{name}.remote", stream.remote, "mds"
    if cfg.save_folder is not None:
        yield "save_folder", cfg.save_folder.replace("{run_name}", cfg.run_name), "folder"
    if cfg.load_path is not None:
        yield "load_path", cfg.load_path, "file"
    if cfg.model.openflamingo_checkpoint is not None:
        yield "model.openflamingo_checkpoint", cfg.model.openflamingo_checkpoint, "file"


def check_urls(cfg: TrainConfig) -> None:
    for key, url, expect in _urls(cfg):
        if "://" not in url:
            continue
        scheme, rest = url.split("://", 1)
        bucket, _, prefix = rest.partition("/")
        supported = STREAM_SCHEMES if expect == "mds" else CHECKPOINT_SCHEMES
        if scheme not in supported:
            raise PreflightError(f"{key}: {url}: unsupported scheme {scheme}:// (use one of "
                                 f"{', '.join(sorted(s + '://' for s in supported))})")
        if not bucket:
            raise PreflightError(f"{key}: {url}: no bucket named")
        if scheme == "s3":
            _check_s3(key, url, bucket, prefix.strip("/"), expect)


def _check_s3(key: str, url: str, bucket: str, prefix: str, expect: str) -> None:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise PreflightError(f"{key}: {url}: no AWS credentials found (set AWS_ACCESS_KEY_ID and "
                             f"AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run where an instance role applies)")
    client = session.client("s3", endpoint_url=os.environ.get("S3_ENDPOINT_URL") or None,
                            config=Config(connect_timeout=5, read_timeout=10, retries={"max_attempts": 2}))
    try:
        try:
            client.head_bucket(Bucket=bucket)
        except ClientError as e:  # HEAD answers carry only the status
            status = e.response.get("Error", {}).get("Code", "")
            raise PreflightError(f"{key}: {url}: " + {"404": "the bucket does not exist",
                                                       "403": "access denied to the bucket"}.get(status, status)) from None
        if expect == "mds":
            index = f"{prefix}/index.json" if prefix else "index.json"
            if not _exists(client, bucket, index):
                raise PreflightError(f"{key}: {url}: no index.json there (an MDS folder written by convert/ has one)")
        elif expect == "file" and not client.list_objects_v2(Bucket=bucket, Prefix=prefix, MaxKeys=1).get("KeyCount"):
            raise PreflightError(f"{key}: {url}: no such object")
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        why = {"AccessDenied": "access denied", "InvalidAccessKeyId": "the access key is not valid",
               "SignatureDoesNotMatch": "the secret key does not match the access key"}.get(code, code or str(e))
        raise PreflightError(f"{key}: {url}: {why}") from None
    except BotoCoreError as e:
        raise PreflightError(f"{key}: {url}: cannot reach the store ({type(e).__name__}: {e})") from None


def _exists(client, bucket: str, key: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        client.head_object(Bucket=bucket, Key=key)
        return True
    except ClientError as e:
        if e.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
