"""Real binaries and loopback ports for tests that start real servers (redis-server, PostgreSQL, Chromium,
jwtkit serve).

A test that needs a binary the machine lacks is skipped with a printed reason, except under ``CI=true``,
where a missing binary fails the run. The folder ``tests/`` is on ``sys.path`` (the root conftest lives
there), so any test module can ``from processes import free_port, require_binary, wait_for_port``.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, *, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before opening port {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def require_binary(name: str) -> str:
    """The binary's path; skip the test when it is missing, or fail under CI=true."""
    path = name if os.path.isabs(name) else shutil.which(name)
    if path and os.access(path, os.X_OK):
        return path
    reason = f"{name} is not installed"
    if IN_CI:
        pytest.fail(f"{reason}, and CI=true requires it", pytrace=False)
    pytest.skip(reason)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A throwaway TLS certificate for ``localhost`` and ``127.0.0.1`` (its own CA, valid for a day), written
    as ``cert.pem`` and ``key.pem`` into ``directory``: for real TLS servers in tests (Redis, SMTP, HTTPS)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


class PostgresCluster:
    """A throwaway PostgreSQL cluster (Debian's ``initdb``/``pg_ctl`` under ``pg_config --bindir``) on a free
    loopback port, in a temporary directory, with ``-A trust`` (see shared/test-recipes.md). As root, the
    binaries run as the ``postgres`` system user (they refuse root). Tests may ``stop()`` it
    (``-m immediate``), ``freeze()``/``thaw()`` it (SIGSTOP/SIGCONT on the postmaster and its children) and
    ``start()`` it again on the same port. Never the machine's own PostgreSQL on 5432."""

    def __init__(self, bindir: str, workdir: Path) -> None:
        self.bindir = bindir
        self.workdir = workdir
        self.data = workdir / "data"
        self.port = free_port()
        self._as_root = os.geteuid() == 0
        if self._as_root:
            shutil.chown(workdir, "postgres", "postgres")

    @property
    def url(self) -> str:
        return self.database_url("postgres")

    def database_url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, tool: str, *args: str) -> None:
        command = [os.path.join(self.bindir, tool), *args]
        if self._as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, timeout=60)
        if result.returncode != 0:
            error = result.stderr.decode(errors="replace")
            raise RuntimeError(f"{tool} failed ({result.returncode}): {error}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.workdir / "log"), "-w", "start", "-o",
                  f"-p {self.port} -k {self.workdir} -c listen_addresses=127.0.0.1 -c fsync=off "
                  "-c max_connections=200")
        wait_for_port(self.port)

    def stop(self) -> None:
        """``pg_ctl -m immediate stop``: the server dies at once, as in a crash."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def running(self) -> bool:
        return (self.data / "postmaster.pid").exists()

    def _pids(self) -> list[int]:
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        children = subprocess.run(["pgrep", "-P", str(postmaster)], capture_output=True, text=True).stdout
        return [postmaster, *(int(pid) for pid in children.split())]

    def freeze(self) -> None:
        """SIGSTOP the server and its backends: connections stay open, nothing answers."""
        for pid in self._pids():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self._pids():
            os.kill(pid, signal.SIGCONT)

    def kill(self) -> None:
        """``kill -9`` the server and its backends; :meth:`start` brings it back (crash recovery)."""
        pids = self._pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in pids:  # gone before a restart looks at postmaster.pid
            for _ in range(200):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.01)


def postgres_bindir() -> str:
    """Debian's PostgreSQL server binaries (``pg_config --bindir``); skip when missing, fail under CI=true."""
    pg_config = shutil.which("pg_config")
    bindir = ""
    if pg_config:
        bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True).stdout.strip()
    if bindir and all(os.access(os.path.join(bindir, tool), os.X_OK) for tool in ("initdb", "pg_ctl")):
        return bindir
    reason = "PostgreSQL server binaries (initdb, pg_ctl under pg_config --bindir) are not installed"
    if IN_CI:
        pytest.fail(f"{reason}, and CI=true requires them", pytrace=False)
    pytest.skip(reason)


class LocalRedisCluster:
    """A throwaway Redis Cluster of three primaries (no replicas) on free loopback ports, each node in its own
    folder under ``workdir`` (see shared/test-recipes.md). ``cluster-require-full-coverage no``: when a test
    kills one primary (:meth:`kill`, ``kill -9`` by pid), the others keep serving their own slots.
    :meth:`start_node` brings a killed node back on its port with its ``nodes.conf`` (its slots, empty)."""

    def __init__(self, binary: str, cli: str, workdir: Path, *, primaries: int = 3) -> None:
        self.binary = binary
        self.cli = cli
        self.workdir = workdir
        self.ports = [free_port() for _ in range(primaries)]
        # the cluster bus: free ports too (the default, port + 10000, may be above 65535 or taken)
        self.bus_ports = {port: free_port() for port in self.ports}
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start_node(self, port: int) -> None:
        folder = self.workdir / str(port)
        folder.mkdir(exist_ok=True)
        log = open(folder / "redis.log", "ab")  # noqa: SIM115 - the child owns it
        self.procs[port] = subprocess.Popen(
            [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
             "--cluster-port", str(self.bus_ports[port]),
             "--cluster-config-file", str(folder / "nodes.conf"), "--cluster-node-timeout", "2000",
             "--cluster-require-full-coverage", "no", "--dir", str(folder), "--save", "",
             "--appendonly", "no", "--daemonize", "no"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_for_port(port, proc=self.procs[port])

    def start(self, *, timeout: float = 30.0) -> None:
        """Start every node and join them into one cluster (about 3 s); on failure nothing stays running."""
        try:
            for port in self.ports:
                self.start_node(port)
            result = subprocess.run([self.cli, "--cluster", "create",
                                     *(f"127.0.0.1:{port}" for port in self.ports),
                                     "--cluster-replicas", "0", "--cluster-yes"],
                                    capture_output=True, timeout=timeout)
            if result.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {result.stdout!r} {result.stderr!r}")
            self.wait_until_ok(timeout=timeout)
        except BaseException:
            self.stop()
            raise

    def cluster_info(self, port: int) -> dict[str, str]:
        result = subprocess.run([self.cli, "-h", "127.0.0.1", "-p", str(port), "cluster", "info"],
                                capture_output=True, text=True, timeout=5)
        pairs = (line.split(":", 1) for line in result.stdout.splitlines() if ":" in line)
        return {name: value.strip() for name, value in pairs}

    def wait_until_ok(self, *, timeout: float = 30.0) -> None:
        """Poll every running node's ``cluster info`` until each says ``cluster_state:ok`` and knows all
        the nodes."""
        deadline = time.monotonic() + timeout
        while True:
            infos = [self.cluster_info(port) for port, proc in self.procs.items() if proc.poll() is None]
            if infos and all(info.get("cluster_state") == "ok"
                             and info.get("cluster_known_nodes") == str(len(self.ports)) for info in infos):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster on ports {self.ports} is not ok after {timeout}s: {infos}")
            time.sleep(0.05)

    def kill(self, port: int) -> None:
        """``kill -9`` the node on ``port``."""
        proc = self.procs.pop(port, None)
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    def pid(self, port: int) -> int:
        return self.procs[port].pid

    def stop(self) -> None:
        for port in list(self.procs):
            proc = self.procs[port]
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGCONT)  # harmless unless a test left it stopped
            self.kill(port)
