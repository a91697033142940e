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
import urllib.error
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


def wait_until_it_answers(
    url: str, proc: subprocess.Popen, seconds: float, log: Path | None = None
) -> None:
    """Return once the server ``proc`` started answers ``url`` with any HTTP
    response; raise if it exits or stays silent for ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # an error status is an answer
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                said = log.read_text() if log is not None else ""
                raise RuntimeError(f"{proc.args[0]} did not start: {said}") from None
            time.sleep(0.2)


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
        wait_until_it_answers(f"{endpoint}/moto-api/", proc, 60, log)
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
