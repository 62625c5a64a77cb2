"""``s3://bucket/prefix?region=…&endpoint_url=…&sse=…``: blobs as S3 objects under ``prefix/``.

- Small objects are one ``PutObject``; from ``MULTIPART_BYTES`` on, a multipart upload in
  ``PART_BYTES`` parts (aborted if any part fails). Reads are ranged ``GetObject`` calls of
  ``PART_BYTES``, each pinned to the first answer's ETag (``If-Match``), so a big read never
  mixes two versions of an object.
- ``put_if_absent`` is S3's conditional write (``If-None-Match: *`` on ``PutObject`` or on
  ``CompleteMultipartUpload``): of racing writers S3 lets exactly one create the key.
- ``sse=AES256`` or ``sse=aws:kms`` (with ``kms_key_id=…``) sets server-side encryption.
- Any S3-compatible store (MinIO, Ceph) works through ``endpoint_url``; credentials come from
  the usual AWS chain. The bucket must exist (``htcgrid aws create --bucket …`` makes one).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from htcgrid.dataplane.base import DataPlane
from htcgrid.dataplane.keys import check
from htcgrid.errors import ConfigurationError, NotFound, ResourceMissing
from htcgrid.store.aws_calls import AwsConfig, Calls, ConditionFailed
from htcgrid.urls import query

PART_BYTES = 8 * 1024 * 1024
MULTIPART_BYTES = 16 * 1024 * 1024
DELETE_BATCH = 1000


def split_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix?…`` → ``("bucket", "some/prefix/")`` (prefix may be empty)."""
    parts = urlsplit(url)
    if not parts.netloc:
        raise ConfigurationError(f"an s3:// URL needs a bucket: {url!r}")
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3DataPlane(DataPlane):
    def __init__(
        self,
        url: str,
        calls: Calls | None = None,
        part_bytes: int = PART_BYTES,
        multipart_bytes: int = MULTIPART_BYTES,
    ) -> None:
        self.url = url
        self.bucket, self.prefix = split_s3_url(url)
        options = query(url)
        self.calls = calls or Calls()
        self.client = AwsConfig(options.get("region"), options.get("endpoint_url")).client("s3")
        self.part_bytes = part_bytes
        self.multipart_bytes = max(multipart_bytes, part_bytes)
        self.encryption: dict[str, str] = {}
        if options.get("sse"):
            self.encryption["ServerSideEncryption"] = options["sse"]
        if options.get("kms_key_id"):
            self.encryption["SSEKMSKeyId"] = options["kms_key_id"]
        try:
            self.calls(self.client.head_bucket, Bucket=self.bucket)
        except (ResourceMissing, NotFound):
            raise ConfigurationError(
                f"S3 bucket {self.bucket!r} does not exist: create it "
                f"(`htcgrid aws create --tag … --bucket {self.bucket}`)"
            ) from None

    def _key(self, key: str) -> str:
        return self.prefix + check(key)

    def put(self, key: str, data: bytes) -> None:
        self._write(self._key(key), data, {})

    def put_if_absent(self, key: str, data: bytes) -> bool:
        try:
            self._write(self._key(key), data, {"IfNoneMatch": "*"})
        except ConditionFailed:
            return False
        return True

    def _write(self, name: str, data: bytes, condition: dict[str, str]) -> None:
        if len(data) < self.multipart_bytes:
            self.calls(
                self.client.put_object,
                Bucket=self.bucket,
                Key=name,
                Body=data,
                **self.encryption,
                **condition,
            )
            return
        upload = self.calls(
            self.client.create_multipart_upload, Bucket=self.bucket, Key=name, **self.encryption
        )["UploadId"]
        try:
            parts = [self._part(name, upload, data, n) for n in range(self._parts(len(data)))]
            self.calls(
                self.client.complete_multipart_upload,
                Bucket=self.bucket,
                Key=name,
                UploadId=upload,
                MultipartUpload={"Parts": parts},
                **condition,
            )
        except BaseException:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=name, UploadId=upload)
            raise

    def _parts(self, size: int) -> int:
        return max(1, -(-size // self.part_bytes))

    def _part(self, name: str, upload: str, data: bytes, n: int) -> dict[str, Any]:
        body = data[n * self.part_bytes : (n + 1) * self.part_bytes]
        answer = self.calls(
            self.client.upload_part,
            Bucket=self.bucket,
            Key=name,
            UploadId=upload,
            PartNumber=n + 1,
            Body=body,
        )
        return {"ETag": answer["ETag"], "PartNumber": n + 1}

    def get(self, key: str) -> bytes:
        return b"".join(self.iter_chunks(key))

    def iter_chunks(self, key: str) -> Any:
        """The object in ``part_bytes`` pieces, read one ranged GET at a time (a stream for
        a caller that writes them out instead of joining them)."""
        name = self._key(key)
        first = self._range(name, 0, None)
        etag = first["ETag"]
        total = int(first.get("ContentRange", "/0").rsplit("/", 1)[1] or 0)
        yield first["Body"].read()
        for start in range(self.part_bytes, total, self.part_bytes):
            yield self._range(name, start, etag)["Body"].read()

    def _range(self, name: str, start: int, etag: str | None) -> Any:
        end = start + self.part_bytes - 1
        condition = {"IfMatch": etag} if etag else {}
        try:
            return self.calls(
                self.client.get_object,
                Bucket=self.bucket,
                Key=name,
                Range=f"bytes={start}-{end}",
                **condition,
            )
        except ConditionFailed:
            raise NotFound(f"{name} changed while it was being read; read it again") from None
        except ResourceMissing:
            raise NotFound(f"no data at {name}") from None
        except Exception as exc:
            if "InvalidRange" in str(exc):  # an empty object has no byte 0
                return self.calls(self.client.get_object, Bucket=self.bucket, Key=name)
            raise

    def delete(self, key: str) -> None:
        self.calls(self.client.delete_object, Bucket=self.bucket, Key=self._key(key))

    def delete_prefix(self, prefix: str) -> int:
        removed = 0
        token: dict[str, str] = {}
        while True:
            page = self.calls(
                self.client.list_objects_v2,
                Bucket=self.bucket,
                Prefix=self.prefix + prefix,
                MaxKeys=DELETE_BATCH,
                **token,
            )
            names = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if names:
                self.calls(
                    self.client.delete_objects,
                    Bucket=self.bucket,
                    Delete={"Objects": names, "Quiet": True},
                )
                removed += len(names)
            if not page.get("IsTruncated"):
                return removed
            token = {"ContinuationToken": page["NextContinuationToken"]}

    def read_url(self, url: str) -> bytes:
        """The whole object at ``s3://bucket/key`` (a function package already in S3), read
        with this data plane's client, region and endpoint."""
        bucket, key = split_s3_url(url)
        try:
            answer = self.calls(self.client.get_object, Bucket=bucket, Key=key.rstrip("/"))
        except (ResourceMissing, NotFound):
            raise NotFound(f"no object at {url}") from None
        body: bytes = answer["Body"].read()
        return body

    def close(self) -> None:
        self.client.close()
