"""A private pebble (the ACME test server) on free loopback ports, with pebble-challtestsrv as its
DNS so that every name resolves to 127.0.0.1: an HTTP-01 challenge for any name is fetched from
the local port `http_port`, where the devicecloud under test listens."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import trustme

from support.server import free_port

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def pebble_missing() -> str:
    """Why pebble cannot be run here, or ""."""
    for program in (PEBBLE, CHALLTESTSRV):
        if shutil.which(program) is None:
            return f"{program} is not installed (Debian's pebble package)"
    return ""


needs_pebble = pytest.mark.skipif(bool(pebble_missing()), reason=pebble_missing() or "-")
"""Skips a test, saying why, where pebble is absent (under CI=true the run then fails)."""


@dataclass
class Pebble:
    """pebble and its DNS server, in `folder`. HTTP-01 validation connects to `http_port`."""

    folder: Path
    http_port: int
    acme_port: int = field(default_factory=free_port)
    management_port: int = field(default_factory=free_port)
    dns_port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def directory(self) -> str:
        return f"https://127.0.0.1:{self.acme_port}/dir"

    @property
    def ca_bundle(self) -> Path:
        """The CA of pebble's own HTTPS certificate (what `--acme-ca` is given)."""
        return self.folder / "https-ca.pem"

    def start(self) -> Pebble:
        self.folder.mkdir(parents=True, exist_ok=True)
        authority = trustme.CA()
        authority.cert_pem.write_to_path(str(self.ca_bundle))
        https = authority.issue_cert("127.0.0.1", "localhost")
        https.private_key_pem.write_to_path(str(self.folder / "https-key.pem"))
        https.cert_chain_pems[0].write_to_path(str(self.folder / "https-cert.pem"))
        config = {"pebble": {
            "listenAddress": f"127.0.0.1:{self.acme_port}",
            "managementListenAddress": f"127.0.0.1:{self.management_port}",
            "certificate": str(self.folder / "https-cert.pem"),
            "privateKey": str(self.folder / "https-key.pem"),
            "httpPort": self.http_port,
            "tlsPort": free_port(),
            "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
        }}
        (self.folder / "pebble.json").write_text(json.dumps(config))
        log = open(self.folder / "pebble.log", "ab")  # noqa: SIM115 - handed to the children
        self.processes.append(subprocess.Popen(
            [CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"127.0.0.1:{free_port()}"],
            stdout=log, stderr=subprocess.STDOUT))
        self.processes.append(subprocess.Popen(
            [PEBBLE, "-config", str(self.folder / "pebble.json"),
             "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0"}))
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(self.directory, verify=self._trust(), timeout=1).is_success:
                    return self
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, f"pebble did not start:\n{self.log()}"
            time.sleep(0.05)

    def root(self) -> str:
        """The root (PEM) of the chains pebble issues (made anew at each start of pebble)."""
        reply = httpx.get(f"https://127.0.0.1:{self.management_port}/roots/0",
                          verify=self._trust(), timeout=5)
        reply.raise_for_status()
        return reply.text

    def _trust(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_bundle)

    def log(self) -> str:
        return (self.folder / "pebble.log").read_text(errors="replace")

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(10)
        self.processes.clear()
