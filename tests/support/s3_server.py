"""A real S3 server on loopback for the tests: moto's ``moto_server``.

It answers the S3 HTTP API (ranged GETs, multipart, paged listings) and, with
``INITIAL_NO_AUTH_ACTION_COUNT``, checks signatures and access keys like AWS:
the first three requests (create a user, give it S3, make its key) are the
only unauthenticated ones. Started as a process and stopped by its PID.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

POLICY = (
    '{"Version": "2012-10-17", "Statement": '
    '[{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}'
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def s3_server(log: Path, check_keys: bool = True) -> Iterator[dict[str, str]]:
    """A running server; yields the environment that reaches it with a valid
    key (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...). Without ``check_keys``
    every key is accepted (and each request is answered faster)."""
    import boto3

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    binary = Path(sys.executable).parent / "moto_server"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(binary), "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "3"}
            if check_keys
            else dict(os.environ),
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1)
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server did not start: {log.read_text()}"
                    ) from None
                time.sleep(0.2)
        iam = boto3.client(
            "iam",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="setup",
            aws_secret_access_key="setup",
        )
        iam.create_user(UserName="percell")
        iam.put_user_policy(UserName="percell", PolicyName="s3", PolicyDocument=POLICY)
        key = iam.create_access_key(UserName="percell")["AccessKey"]
        yield {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_DEFAULT_REGION": "us-east-1",
        }
    finally:
        os.kill(proc.pid, 15)
        proc.wait(timeout=30)


def s3_client(env: dict[str, str]):
    """A boto3 S3 client with the server's valid key, to put test objects."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
