"""A real S3 API server on localhost for the object-store tests: moto's standalone server
(werkzeug, HTTP), spoken to by the same s3fs/botocore client a cluster uses. The endpoint and
credentials reach every process (subprocesses, Ray workers) through the standard ``AWS_*``
environment variables, as a user's would."""

from __future__ import annotations

import logging
import os
import uuid
from dataclasses import dataclass


@dataclass
class S3Server:
    endpoint: str
    server: object

    def env(self) -> dict[str, str]:
        """The environment variables that point a client at this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def new_bucket(self) -> str:
        """A fresh bucket, created through the S3 API; its name."""
        import boto3

        name = f"ckd-{uuid.uuid4().hex[:12]}"
        boto3.client("s3", endpoint_url=self.endpoint, **_keys()).create_bucket(Bucket=name)
        return name

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, **_keys())

    def stop(self) -> None:
        self.server.stop()


def _keys() -> dict[str, str]:
    return {"aws_access_key_id": "testing", "aws_secret_access_key": "testing", "region_name": "us-east-1"}


def start_s3_server() -> S3Server:
    """Start moto's server on a free localhost port and export its endpoint and test keys."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    s3 = S3Server(f"http://{host}:{port}", server)
    os.environ.update(s3.env())
    return s3
