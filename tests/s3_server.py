"""A real S3 API server on localhost for the object-store tests: moto's standalone server
(werkzeug, HTTP), spoken to by the same s3fs/botocore client a cluster uses. The endpoint and
credentials reach every process (subprocesses, Ray workers) through the standard ``AWS_*``
environment variables, as a user's would."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
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
        if isinstance(self.server, subprocess.Popen):
            self.server.kill()
            self.server.wait()
        else:
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


def spawn_s3_server() -> S3Server:
    """moto's server in a process of its own (benchmarks: the server's work does not share this
    process's interpreter), on a free localhost port; its endpoint and test keys exported."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(400):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        raise RuntimeError(f"moto's server did not start on port {port}")
    s3 = S3Server(f"http://127.0.0.1:{port}", proc)
    os.environ.update(s3.env())
    return s3
