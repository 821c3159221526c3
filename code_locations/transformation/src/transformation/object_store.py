"""Where gold exports go: an S3-compatible bucket or a local folder, published atomically.

Objects are named relative to the URI (``gold/...``); gold_exports decides the names.

A file is written completely to a staging place first, then published in one step: an S3 PUT
(or multipart complete) of the finished file, or os.replace within the target directory. A
reader sees the previous object or the new one, never half a file; a failed export leaves the
previous object as it was.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import dagster as dg
from pydantic import Field

EXPORT_URI = "EXPORT_URI"
EXPORT_S3_ENDPOINT_URL = "EXPORT_S3_ENDPOINT_URL"


class ExportStore(dg.ConfigurableResource):
    """Objects under ``uri``: ``s3://bucket/prefix`` or a local directory."""

    uri: str = Field(description="s3://bucket/prefix, or a local directory path")
    s3_endpoint_url: str | None = Field(
        default=None,
        description=f"S3-compatible endpoint; when unset, ${EXPORT_S3_ENDPOINT_URL} if set, "
        "else AWS S3",
    )
    aws_access_key_id: str | None = Field(default=None, description="else boto3's chain")
    aws_secret_access_key: str | None = Field(default=None, description="else boto3's chain")
    region_name: str = "us-east-1"
    retention_hours: float = Field(
        default=24.0,
        description="How long a build the manifest no longer names stays readable before it "
        "is deleted (a reader that fetched an older manifest has that long to finish)",
    )

    @property
    def is_s3(self) -> bool:
        return self.uri.startswith("s3://")

    def _bucket_and_prefix(self) -> tuple[str, str]:
        parts = urlparse(self.uri)
        return parts.netloc, parts.path.strip("/")

    def object_uri(self, name: str) -> str:
        """Where ``name`` (relative, like gold/x.parquet) is published."""
        if self.is_s3:
            bucket, prefix = self._bucket_and_prefix()
            return f"s3://{bucket}/{'/'.join(p for p in (prefix, name) if p)}"
        return str(Path(self.uri) / name)

    def s3_client(self) -> Any:
        import boto3

        endpoint = self.s3_endpoint_url or dg.EnvVar(EXPORT_S3_ENDPOINT_URL).get_value() or None
        return boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name=self.region_name,
            aws_access_key_id=self.aws_access_key_id,
            aws_secret_access_key=self.aws_secret_access_key,
        )

    @contextmanager
    def publishing(self, name: str) -> Iterator[Path]:
        """A path to write ``name`` to; published when the block succeeds, discarded if not."""
        if self.is_s3:
            with tempfile.TemporaryDirectory(prefix="export-") as scratch:
                staged = Path(scratch) / Path(name).name
                yield staged
                bucket, _ = self._bucket_and_prefix()
                self.s3_client().upload_file(str(staged), bucket, self._key(name))
            return
        target = Path(self.object_uri(name))
        target.parent.mkdir(parents=True, exist_ok=True)
        handle, staged_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        os.close(handle)
        staged = Path(staged_name)
        try:
            yield staged
            os.chmod(staged, 0o644)
            os.replace(staged, target)
        finally:
            staged.unlink(missing_ok=True)

    def list_objects(self) -> dict[str, int]:
        """Published objects under the prefix: URI -> size in bytes (staging files excluded)."""
        if self.is_s3:
            bucket, prefix = self._bucket_and_prefix()
            found: dict[str, int] = {}
            pages = (
                self.s3_client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=bucket, Prefix=f"{prefix}/" if prefix else "")
            )
            for page in pages:
                for item in page.get("Contents", []):
                    found[f"s3://{bucket}/{item['Key']}"] = item["Size"]
            return found
        root = Path(self.uri)
        if not root.exists():
            return {}
        return {
            str(path): path.stat().st_size
            for path in sorted(root.rglob("*"))
            if path.is_file() and not path.name.startswith(".")
        }

    def _key(self, name: str) -> str:
        bucket, _ = self._bucket_and_prefix()
        return self.object_uri(name).removeprefix(f"s3://{bucket}/")

    def read_bytes(self, name: str) -> bytes:
        """The object's bytes; FileNotFoundError when there is none."""
        if self.is_s3:
            bucket, _ = self._bucket_and_prefix()
            client = self.s3_client()
            try:
                body = client.get_object(Bucket=bucket, Key=self._key(name))["Body"]
            except client.exceptions.NoSuchKey:
                raise FileNotFoundError(self.object_uri(name)) from None
            return body.read()  # type: ignore[no-any-return]
        return Path(self.object_uri(name)).read_bytes()

    def names(self, under: str = "") -> list[str]:
        """Published objects whose name starts with ``under``, relative to the URI."""
        root = self.object_uri("")
        return sorted(
            uri.removeprefix(root.rstrip("/") + "/")
            for uri in self.list_objects()
            if uri.removeprefix(root.rstrip("/") + "/").startswith(under)
        )

    def delete(self, names: list[str]) -> None:
        """Remove objects (missing ones are fine)."""
        if self.is_s3:
            bucket, _ = self._bucket_and_prefix()
            client = self.s3_client()
            for start in range(0, len(names), 1000):  # DeleteObjects takes 1000 keys
                chunk = [{"Key": self._key(n)} for n in names[start : start + 1000]]
                client.delete_objects(Bucket=bucket, Delete={"Objects": chunk, "Quiet": True})
            return
        for name in names:
            path = Path(self.object_uri(name))
            path.unlink(missing_ok=True)
            for parent in path.parents:  # drop the build's folder once empty
                if parent == Path(self.uri) or any(parent.iterdir()):
                    break
                parent.rmdir()
