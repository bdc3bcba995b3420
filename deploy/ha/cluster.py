#!/usr/bin/env python3
"""A local PostgreSQL high-availability cluster for MedSwitch, in one command.

One etcd and two PostgreSQL 15 nodes managed by Patroni, with synchronous
replication (`synchronous_mode: true`: a commit is acknowledged once it is on
both nodes while both run). Debian packages: `patroni`, `etcd-server`,
`postgresql-15`. Needs only the standard library and PyYAML (which Patroni
itself depends on), so the system python3 runs it:

    python3 deploy/ha/cluster.py start       # etcd, node1, node2; waits for a sync standby
    python3 deploy/ha/cluster.py url         # the multi-host MEDSWITCH_DATABASE_URL
    python3 deploy/ha/cluster.py status      # patronictl list
    python3 deploy/ha/cluster.py kill        # kill -9 the primary's Patroni and PostgreSQL
    python3 deploy/ha/cluster.py start       # starts what is not running (a killed node rejoins)
    python3 deploy/ha/cluster.py switchover  # planned: the synchronous standby becomes primary
    python3 deploy/ha/cluster.py stop        # stops everything (data stays in --dir)

`--dir` (default ./var/ha) holds the data, logs, generated passwords (0600)
and process ids; `--base-port` (default 5440) places etcd at +0/+1, the
PostgreSQL nodes at +2/+3 and their Patroni REST APIs at +4/+5. Run as root,
Patroni and PostgreSQL run as the `postgres` user (PostgreSQL refuses root).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))
NODES = ("node1", "node2")
SCOPE = "medswitch"
APP_USER = "medswitch"  # the schema owner post_bootstrap.sh creates
APP_DB = "medswitch"
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 60.0
HERE = Path(__file__).resolve().parent
SHARED_CONFIG = HERE / "patroni.yml"  # what every node shares (compose uses it too)


class Cluster:
    def __init__(self, root: Path, base_port: int) -> None:
        self.root = root.resolve()
        self.etcd_port = base_port
        self.pg_ports = {name: base_port + 2 + i for i, name in enumerate(NODES)}
        self.rest_ports = {name: base_port + 4 + i for i, name in enumerate(NODES)}

    # ------------------------------------------------------------- files

    def secrets(self) -> dict[str, str]:
        path = self.root / "secrets.json"
        if not path.exists():
            made = {who: secrets.token_urlsafe(18) for who in ("superuser", "replication", "app")}
            path.touch(mode=0o600)
            path.write_text(json.dumps(made), "utf-8")
        loaded: dict[str, str] = json.loads(path.read_text("utf-8"))
        return loaded

    def pids(self) -> dict[str, int]:
        path = self.root / "pids.json"
        found: dict[str, int] = json.loads(path.read_text("utf-8")) if path.exists() else {}
        return found

    def save_pid(self, name: str, pid: int | None) -> None:
        pids = self.pids()
        if pid is None:
            pids.pop(name, None)
        else:
            pids[name] = pid
        (self.root / "pids.json").write_text(json.dumps(pids), "utf-8")

    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{self.pg_ports[n]}" for n in NODES)
        password = self.secrets()["app"]
        return (
            f"postgresql://{APP_USER}:{password}@{hosts}/{APP_DB}?target_session_attrs=read-write"
        )

    def patroni_config(self, name: str) -> dict[str, Any]:
        """deploy/ha/patroni.yml with this node's local addresses, directories and passwords."""
        import yaml  # PyYAML: Patroni's own dependency, and in MedSwitch's dev extras

        config: dict[str, Any] = yaml.safe_load(SHARED_CONFIG.read_text("utf-8"))
        pw = self.secrets()
        node_dir = self.root / name
        rest = f"127.0.0.1:{self.rest_ports[name]}"
        pg = f"127.0.0.1:{self.pg_ports[name]}"
        config["name"] = name
        config["restapi"] = {"listen": rest, "connect_address": rest}
        config["etcd3"] = {"hosts": f"127.0.0.1:{self.etcd_port}"}
        # a copy start_node puts beside the nodes: the postgres user may not be
        # able to reach the repository's own copy (a checkout under /root)
        config["bootstrap"]["post_bootstrap"] = str(self.root / "post_bootstrap.sh")
        config["postgresql"].update(
            listen=pg,
            connect_address=pg,
            data_dir=str(node_dir / "data"),
            bin_dir=str(PG_BIN),
            pgpass=str(node_dir / "pgpass"),
            authentication={
                "superuser": {"username": "postgres", "password": pw["superuser"]},
                "replication": {"username": "replicator", "password": pw["replication"]},
                "rewind": {"username": "postgres", "password": pw["superuser"]},
            },
            parameters={"unix_socket_directories": str(node_dir)},
        )
        return config

    # ---------------------------------------------------------- processes

    def running(self, name: str) -> bool:
        pid = self.pids().get(name)
        if pid is None:
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        stat = Path(f"/proc/{pid}/stat")
        return not (stat.exists() and stat.read_text().split(")")[-1].split()[0] == "Z")

    def spawn(
        self, name: str, argv: list[str], *, as_postgres: bool, env: dict[str, str] | None = None
    ) -> None:
        if as_postgres and os.geteuid() == 0:
            argv = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *argv]
        with (self.root / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.root,
                env={**os.environ, **(env or {})},
            )
        self.save_pid(name, proc.pid)

    def start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_port + 1}"
        self.spawn(
            "etcd",
            [
                "etcd",
                "--name=ha-etcd",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=ha-etcd={peer}",
                "--initial-cluster-state=new",
            ],
            as_postgres=False,
        )
        wait_for(lambda: http_status(f"{client}/health") == 200, "etcd to answer")

    def start_node(self, name: str) -> None:
        node_dir = self.root / name
        node_dir.mkdir(mode=0o700, exist_ok=True)
        shutil.copy(HERE / "post_bootstrap.sh", self.root / "post_bootstrap.sh")
        (self.root / "post_bootstrap.sh").chmod(0o755)
        config = node_dir / "patroni.yml"
        config.write_text(json.dumps(self.patroni_config(name), indent=2), "utf-8")  # JSON is YAML
        config.chmod(0o600)
        if os.geteuid() == 0:
            owner = pwd.getpwnam("postgres")
            for path in (node_dir, *node_dir.rglob("*")):
                os.lchown(path, owner.pw_uid, owner.pw_gid)
        # post_bootstrap.sh creates the schema owner with this password
        password = {"MEDSWITCH_DB_PASSWORD": self.secrets()["app"]}
        self.spawn(name, ["patroni", str(config)], as_postgres=True, env=password)

    def rest(self, name: str, path: str) -> int | None:
        return http_status(f"http://127.0.0.1:{self.rest_ports[name]}{path}")

    def members(self) -> list[dict[str, Any]]:
        for name in NODES:
            try:
                url = f"http://127.0.0.1:{self.rest_ports[name]}/cluster"
                with urllib.request.urlopen(url, timeout=2) as resp:
                    found: list[dict[str, Any]] = json.load(resp)["members"]
                    return found
            except (OSError, ValueError, KeyError):
                continue
        return []

    def primary(self) -> str | None:
        return next((m["name"] for m in self.members() if m["role"] == "leader"), None)

    def healthy(self) -> bool:
        """A leader and a streaming synchronous standby."""
        roles = {m["role"]: m.get("state") for m in self.members()}
        return "leader" in roles and roles.get("sync_standby") in ("streaming", "running")


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return None


def wait_for(ready: Any, what: str, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"cluster: timed out waiting for {what}")
        time.sleep(0.5)


def start(cluster: Cluster) -> None:
    for tool in ("etcd", "patroni", "setpriv"):
        if shutil.which(tool) is None:
            raise SystemExit(f"cluster: {tool} not found (apt-get install patroni etcd-server)")
    cluster.root.mkdir(parents=True, exist_ok=True)
    cluster.root.chmod(0o755)  # the postgres user must reach its node directory
    cluster.secrets()
    if not cluster.running("etcd"):
        cluster.start_etcd()
    first = [n for n in NODES if not cluster.running(n)]
    for name in first:
        cluster.start_node(name)
        if cluster.primary() is None:  # the first node bootstraps alone
            wait_for(lambda: cluster.primary() is not None, f"{name} to lead")
    wait_for(cluster.healthy, "a leader and a synchronous standby")
    print(f"primary {cluster.primary()}; {cluster.url()}")


def stop(cluster: Cluster) -> None:
    """Patroni nodes first (each stops its PostgreSQL), then etcd."""
    for name in (*NODES, "etcd"):
        pid = cluster.pids().get(name)
        if pid is not None and cluster.running(name):
            os.kill(pid, signal.SIGTERM)
            try:
                wait_for(lambda n=name: not cluster.running(n), f"{name} to stop", STOP_TIMEOUT_S)
            except SystemExit:
                os.kill(pid, signal.SIGKILL)
        if name != "etcd":
            kill_postmaster(cluster, name, signal.SIGTERM)
        cluster.save_pid(name, None)
    print("stopped")


def postmaster_pid(cluster: Cluster, name: str) -> int | None:
    pidfile = cluster.root / name / "data" / "postmaster.pid"
    try:
        return int(pidfile.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def kill_postmaster(cluster: Cluster, name: str, sig: signal.Signals) -> None:
    pid = postmaster_pid(cluster, name)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def kill_primary(cluster: Cluster) -> str:
    """kill -9 the primary's Patroni and PostgreSQL together, as if its machine died."""
    name = cluster.primary()
    if name is None:
        raise SystemExit("cluster: no primary to kill")
    pid = cluster.pids()[name]
    os.kill(pid, signal.SIGKILL)
    kill_postmaster(cluster, name, signal.SIGKILL)
    print(f"killed {name}")
    return name


def switchover(cluster: Cluster) -> None:
    """A planned switchover: the synchronous standby becomes the primary."""
    leader = cluster.primary()
    candidate = next((n for n in NODES if n != leader), None)
    if leader is None or candidate is None:
        raise SystemExit("cluster: no primary to switch over from")
    config = cluster.root / leader / "patroni.yml"
    argv = ["patronictl", "-c", str(config), "switchover", "--force"]
    argv += ["--leader", leader, "--candidate", candidate, SCOPE]
    subprocess.run(argv, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["start", "stop", "status", "url", "kill", "switchover"])
    parser.add_argument("--dir", type=Path, default=Path(os.environ.get("HA_DIR", "var/ha")))
    parser.add_argument("--base-port", type=int, default=int(os.environ.get("HA_PORT", "5440")))
    args = parser.parse_args(argv)
    cluster = Cluster(args.dir, args.base_port)
    if args.command == "start":
        start(cluster)
    elif args.command == "stop":
        stop(cluster)
    elif args.command == "url":
        print(cluster.url())
    elif args.command == "kill":
        kill_primary(cluster)
    elif args.command == "switchover":
        switchover(cluster)
    else:
        config = cluster.root / NODES[0] / "patroni.yml"
        return subprocess.run(["patronictl", "-c", str(config), "list"], check=False).returncode
    return 0


if __name__ == "__main__":
    sys.exit(main())
