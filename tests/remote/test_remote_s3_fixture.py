"""The moto S3 server the remote tests run against: conditional writes behave as on S3."""

from __future__ import annotations

import pytest


def test_bucket_is_empty_and_conditional_writes_are_enforced(s3_endpoint, s3_bucket):
    import boto3
    from botocore.exceptions import ClientError

    client = boto3.client("s3", endpoint_url=s3_endpoint)
    bucket = s3_bucket.removeprefix("s3://")
    assert client.list_objects_v2(Bucket=bucket)["KeyCount"] == 0
    etag = client.put_object(Bucket=bucket, Key="ref", Body=b"a", IfNoneMatch="*")["ETag"]
    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=bucket, Key="ref", Body=b"b", IfNoneMatch="*")
    with pytest.raises(ClientError, match="PreconditionFailed"):
        client.put_object(Bucket=bucket, Key="ref", Body=b"b", IfMatch='"0"')
    client.put_object(Bucket=bucket, Key="ref", Body=b"b", IfMatch=etag)
    assert client.get_object(Bucket=bucket, Key="ref")["Body"].read() == b"b"
