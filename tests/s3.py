"""moto's S3 server in its own process, for tests of remote storage."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow.fs as pafs
from processes import free_port

BUCKET = "cotstudy-test"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@dataclass(frozen=True)
class S3Server:
    endpoint: str  # http://127.0.0.1:<port>
    filesystem: pafs.S3FileSystem

    def uri(self, prefix: str) -> str:
        """`s3://<bucket>/<prefix>` with the endpoint in its query, so no AWS_ENDPOINT_URL is needed."""
        return f"s3://{BUCKET}/{prefix}?endpoint_override={self.endpoint.removeprefix('http://')}&scheme=http"

    def objects(self, prefix: str) -> dict[str, pafs.FileInfo]:
        """The files under `<bucket>/<prefix>`, by their path below it."""
        root = f"{BUCKET}/{prefix}"
        infos = self.filesystem.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
        return {info.path.removeprefix(root + "/"): info for info in infos if info.type == pafs.FileType.File}


@contextmanager
def s3_server() -> Iterator[S3Server]:
    """A moto S3 server on a free local port with one empty bucket; stopped (by pid) afterwards."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    filesystem = pafs.S3FileSystem(endpoint_override=endpoint, access_key="testing", secret_key="testing",
                                   region="us-east-1", allow_bucket_creation=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                filesystem.create_dir(BUCKET)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.3)
        yield S3Server(endpoint, filesystem)
    finally:
        server.kill()
        server.wait()
