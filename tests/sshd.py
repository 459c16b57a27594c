"""A real OpenSSH server on loopback addresses, started and stopped by tests.

``sshd`` (Debian's openssh-server; installed when missing) runs in the foreground as the current
user, on a free port of 127.0.0.1, 127.0.0.2 and 127.0.0.3, with a host key, a client key and a
configuration made for the test in its own folder: only that key logs in, only as this user.
Run as root, sshd needs its privilege-separation folder /run/sshd (made when missing, as the
Debian service does); ``StrictModes no`` because the key lives under the world-writable /tmp.

Clients use ``ssh_bin``: an ``ssh`` that runs the real one with the test's client configuration
(``-F``: this user's ~/.ssh/config and known_hosts are neither read nor written) and records each
command line, so a test can tell which commands went to which host. Nothing in it names the port
or the key: callers pass them (``-p``, ``-i``) as Horovod does from ``launch.ssh_port`` and
``launch.ssh_identity_file``.
"""

from __future__ import annotations

import getpass
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path

ADDRESSES = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")


def ensure_sshd() -> Path:
    """/usr/sbin/sshd, installing Debian's openssh-server first when it is missing (as root, or
    with sudo that asks no password); the error says how to install it otherwise."""
    if SSHD.exists():
        return SSHD
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    install = [*sudo, "apt-get", "install", "-y", "-q", "openssh-server"]
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(install, env=env, capture_output=True, timeout=600).returncode != 0:
        subprocess.run([*sudo, "apt-get", "update", "-q"], env=env, capture_output=True,
                       timeout=600)
        subprocess.run(install, env=env, capture_output=True, timeout=600)
    if not SSHD.exists():
        raise RuntimeError("sshd is missing and could not be installed here: "
                           "sudo apt-get install -y openssh-server (make test does)")
    return SSHD


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _keygen(path: Path) -> None:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "pipeline-tests",
                    "-f", str(path)], check=True, timeout=60)


class LoopbackSshd:
    """sshd on ``ADDRESSES`` at ``port``; ``identity`` is the client key it accepts."""

    def __init__(self, workdir: Path) -> None:
        sshd = ensure_sshd()
        self.dir, self.user, self.port = workdir, getpass.getuser(), free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        _keygen(workdir / "host_key")
        _keygen(workdir / "client_key")
        self.identity = workdir / "client_key"
        shutil.copy(workdir / "client_key.pub", workdir / "authorized_keys")
        self.log = workdir / "sshd.log"
        self.commands = workdir / "ssh-commands.log"
        config = workdir / "sshd_config"
        config.write_text(self._server_config())
        if os.geteuid() == 0 and not PRIVSEP_DIR.is_dir():
            PRIVSEP_DIR.mkdir(mode=0o755)
        subprocess.run([str(sshd), "-t", "-f", str(config)], check=True, timeout=30)
        self.process = subprocess.Popen([str(sshd), "-D", "-f", str(config), "-E", str(self.log)],
                                        start_new_session=True)
        self.ssh_bin = self._client(workdir)
        self._wait_until_listening()

    def _server_config(self) -> str:
        lines = [f"Port {self.port}", *[f"ListenAddress {a}" for a in ADDRESSES],
                 f"HostKey {self.dir / 'host_key'}", f"PidFile {self.dir / 'sshd.pid'}",
                 f"AuthorizedKeysFile {self.dir / 'authorized_keys'}",
                 "AuthenticationMethods publickey", "PubkeyAuthentication yes",
                 "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no",
                 "StrictModes no", f"AllowUsers {self.user}", "LogLevel VERBOSE",
                 "PermitRootLogin prohibit-password" if os.geteuid() == 0 else "",
                 "X11Forwarding no", "PrintMotd no"]
        return "\n".join(line for line in lines if line) + "\n"

    def _client(self, workdir: Path) -> Path:
        """A folder whose ``ssh`` is the real one with the test's client configuration."""
        config = workdir / "ssh_config"
        config.write_text(f"Host *\n  UserKnownHostsFile {workdir / 'known_hosts'}\n"
                          "  GlobalKnownHostsFile /dev/null\n  IdentitiesOnly yes\n"
                          "  BatchMode yes\n  ConnectTimeout 10\n")
        real = shutil.which("ssh") or "/usr/bin/ssh"
        bin_dir = workdir / "bin"
        bin_dir.mkdir(exist_ok=True)
        (bin_dir / "ssh").write_text(
            "#!/bin/sh\n"
            f"printf '%s\\n' \"$*\" >> {shlex.quote(str(self.commands))}\n"
            f"exec {shlex.quote(real)} -F {shlex.quote(str(config))} \"$@\"\n")
        (bin_dir / "ssh").chmod(0o755)
        return bin_dir

    def _wait_until_listening(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        waiting = list(ADDRESSES)
        while waiting and time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                socket.create_connection((waiting[0], self.port), timeout=1).close()
                waiting.pop(0)
            except OSError:
                time.sleep(0.1)
        if waiting:
            self.stop()
            raise RuntimeError(f"sshd is not listening on {waiting} port {self.port}:\n"
                               + self.log.read_text(errors="replace")[-3000:])

    def logins(self) -> Counter[str]:
        """Accepted public-key logins per address they were made on (sshd's log: the
        connection line names the address, the login line the client port it shares)."""
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        on: dict[str, str] = {}  # client port -> address, as the log goes (ports are reused)
        logins: Counter[str] = Counter()
        accepted = re.compile(rf"Accepted publickey for {re.escape(self.user)} from \S+ "
                              r"port (\d+) ")
        for line in text.splitlines():
            if found := re.search(r"Connection from \S+ port (\d+) on (\S+) port ", line):
                on[found.group(1)] = found.group(2)
            elif found := accepted.search(line):
                logins[on.get(found.group(1), "?")] += 1
        return logins

    def commands_to(self, host: str, containing: str) -> list[str]:
        """The command lines sent through ``ssh_bin`` to ``host`` that contain ``containing``."""
        if not self.commands.exists():
            return []
        return [line for line in self.commands.read_text().splitlines()
                if containing in line and re.search(rf"(^|\s){re.escape(host)}(\s|$)", line)]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)
