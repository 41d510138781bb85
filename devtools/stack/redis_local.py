"""A local ``redis-server`` from the operating system's packages."""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devtools.stack.ports import free_port, wait_until
from devtools.stack.procs import reap
from shared.errors import StackError

log = logging.getLogger(__name__)


def redis_ping(url: str) -> bool:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@dataclass
class LocalRedis:
    data_dir: Path | None = None
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    _own_dir: bool = False
    extra_args: tuple[str, ...] = ()  # more redis-server options (a test's cluster mode)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        assert self.data_dir is not None
        return self.data_dir / "redis.log"

    def start(self, timeout_s: float = 20.0) -> LocalRedis:
        exe = shutil.which("redis-server")
        if exe is None:
            raise StackError(
                "redis-server not found: install the operating system's package "
                "(apt-get install redis-server) or set SLUICE_REDIS_URL"
            )
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix="sluice-redis-"))
            self._own_dir = True
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not self.port:
            self.port = free_port()
        args = [
            exe, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.data_dir),
            "--save", "", "--appendonly", "yes", "--appendfsync", "everysec",
            "--daemonize", "no", "--logfile", str(self.log_path), *self.extra_args,
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        if not wait_until(
            lambda: redis_ping(self.url),
            timeout_s,
            lambda: self.proc is None or self.proc.poll() is not None,
        ):
            self.stop()
            raise StackError(f"redis-server did not start; see {self.log_path}")
        log.info("local Redis ready at %s", self.url)
        return self

    def stop(self, kill: bool = False) -> None:
        if self.proc is not None and self.proc.poll() is None:
            (self.proc.kill if kill else self.proc.terminate)()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                reap(self.proc)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        if self._own_dir and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
