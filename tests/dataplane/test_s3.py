"""What the S3 data plane adds to the contract: multipart uploads and ranged reads for big
objects, conditional writes for both, server-side encryption, a missing bucket named in one
line, and function packages deployed from S3. Against moto's server on loopback."""

from __future__ import annotations

import hashlib
import io
import os
import uuid
import zipfile
from collections.abc import Iterator

import pytest
from backends import aws_env, require_module, s3_bucket
from click.testing import CliRunner

from htcgrid.cli import main
from htcgrid.errors import ConfigurationError, NotFound

require_module("boto3")

MIB = 1024 * 1024


@pytest.fixture
def s3_url() -> Iterator[str]:
    with s3_bucket(f"htcgrid-s3-{uuid.uuid4().hex[:10]}") as url:
        yield url


def _plane(url: str, **options: int):  # type: ignore[no-untyped-def]
    from htcgrid.dataplane.s3 import S3DataPlane

    return S3DataPlane(url, **options)


def test_big_objects_go_up_in_parts_and_come_down_in_ranges(s3_url: str) -> None:
    data = _plane(s3_url, part_bytes=5 * MIB, multipart_bytes=5 * MIB)
    blob = os.urandom(12 * MIB + 3)
    data.put("sessions/s1/s1_0/output.1", blob)
    head = data.client.head_object(Bucket=data.bucket, Key="data/sessions/s1/s1_0/output.1")
    assert head["ETag"].strip('"').endswith("-3")  # S3's mark of a 3-part upload
    chunks = list(data.iter_chunks("sessions/s1/s1_0/output.1"))
    assert [len(c) for c in chunks] == [5 * MIB, 5 * MIB, 2 * MIB + 3]
    assert data.get("sessions/s1/s1_0/output.1") == blob
    assert data.put_if_absent("sessions/s1/s1_0/output.1", b"late") is False
    assert data.put_if_absent("sessions/s1/s1_0/output.2", blob) is True
    assert data.put_if_absent("sessions/s1/s1_0/output.2", os.urandom(11 * MIB)) is False
    assert data.get("sessions/s1/s1_0/output.2") == blob
    uploads = data.client.list_multipart_uploads(Bucket=data.bucket).get("Uploads", [])
    assert uploads == []  # the refused upload was aborted, not left to cost money
    data.put("empty", b"")
    assert data.get("empty") == b""


def test_server_side_encryption_is_settable(s3_url: str) -> None:
    data = _plane(s3_url + "&sse=AES256")
    data.put("functions/f/1.zip", b"zip")
    head = data.client.head_object(Bucket=data.bucket, Key="data/functions/f/1.zip")
    assert head["ServerSideEncryption"] == "AES256"


def test_a_missing_bucket_or_object_says_so(s3_url: str) -> None:
    missing = "s3://no-such-bucket-x/data?" + s3_url.split("?", 1)[1]
    with aws_env(), pytest.raises(ConfigurationError, match="bucket 'no-such-bucket-x' does not"):
        _plane(missing)
    with pytest.raises(NotFound):
        _plane(s3_url).get("never/written")


def _zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", "def lambda_handler(event, context):\n    return event\n")
    return buffer.getvalue()


def test_deploy_a_package_that_is_already_in_s3(s3_url: str) -> None:
    """HTC-Grid's way: the zip sits in a bucket; deploy records its version and sha256."""
    data = _plane(s3_url)
    package = _zip()
    data.client.put_object(Bucket=data.bucket, Key="uploads/lambda.zip", Body=package)
    source = f"s3://{data.bucket}/uploads/lambda.zip"
    command = ["deploy", "f", source, "--handler", "handler.lambda_handler"]
    result = CliRunner().invoke(main, [*command, "--url", "memory://", "--data-url", s3_url])
    assert result.exit_code == 0, result.output
    assert result.output == f"f v1 sha256:{hashlib.sha256(package).hexdigest()}\n"
    assert data.get("functions/f/1.zip") == package
    missing = CliRunner().invoke(
        main,
        [*command[:2], source + ".nope", *command[3:], "--url", "memory://", "--data-url", s3_url],
    )
    assert missing.exit_code == 1 and "no object at" in missing.output
