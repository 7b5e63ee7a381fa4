"""Local paths and remote URIs (s3://, gs://, a shared filesystem) through pyarrow filesystems.

Nothing here assumes a disk shared by all nodes: every worker writes its own files through the
filesystem of the URI, and completion markers are written last, so a reader that sees a marker
sees a finished file.
"""

from __future__ import annotations

import json
import os
import uuid
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

__all__ = ["resolve", "join", "exists", "write_table_atomic", "write_text", "read_text", "list_files",
           "makedirs", "is_remote"]


def is_remote(uri: str) -> bool:
    return "://" in uri and not uri.startswith("file://")


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """(filesystem, path inside it) for a local path or a URI; S3 endpoint from AWS_ENDPOINT_URL."""
    if is_remote(uri):
        if uri.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
            endpoint = os.environ["AWS_ENDPOINT_URL"]
            scheme = "https" if endpoint.startswith("https") else "http"
            fs = pafs.S3FileSystem(endpoint_override=endpoint.split("://", 1)[-1], scheme=scheme,
                                   region=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                                   allow_bucket_creation=True)
            return fs, uri[len("s3://"):]
        return pafs.FileSystem.from_uri(uri)
    path = uri[len("file://"):] if uri.startswith("file://") else uri
    return pafs.LocalFileSystem(), os.path.abspath(os.path.expanduser(path))


def join(base: str, *parts: str) -> str:
    """Join path parts onto a path or URI with '/'."""
    out = base.rstrip("/")
    for p in parts:
        out = f"{out}/{p.strip('/')}"
    return out


def makedirs(uri: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path, recursive=True)


def exists(uri: str) -> bool:
    fs, path = resolve(uri)
    return fs.get_file_info(path).type != pafs.FileType.NotFound


def write_table_atomic(table: pa.Table, uri: str, metadata: "dict[bytes, bytes] | None" = None,
                       compression: str = "zstd") -> None:
    """Write Parquet so that readers never see a partial file (temp name, then move)."""
    fs, path = resolve(uri)
    parent = path.rsplit("/", 1)[0]
    fs.create_dir(parent, recursive=True)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    if isinstance(fs, pafs.LocalFileSystem):
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}.parquet"
        pq.write_table(table, tmp, filesystem=fs, compression=compression)
        fs.move(tmp, path)
    else:  # object stores: a PUT is atomic per object
        pq.write_table(table, path, filesystem=fs, compression=compression)


def write_text(uri: str, text: str) -> None:
    fs, path = resolve(uri)
    fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
    with fs.open_output_stream(path) as f:
        f.write(text.encode())


def read_text(uri: str) -> str:
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as f:
        return f.read().decode()


def write_json(uri: str, obj: Any) -> None:
    write_text(uri, json.dumps(obj, indent=2, sort_keys=True))


def list_files(uri: str, suffix: str = "") -> list[str]:
    """Every file below ``uri`` ending in ``suffix`` (sorted, as URIs/paths like the input)."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return []
    infos = fs.get_file_info(pafs.FileSelector(path, recursive=True))
    prefix = uri.rstrip("/")
    base = path.rstrip("/")
    out = [prefix + i.path[len(base):] for i in infos
           if i.type == pafs.FileType.File and i.path.endswith(suffix)
           and not i.base_name.startswith(".")]
    return sorted(out)
