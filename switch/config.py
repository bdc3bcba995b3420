"""Configuration from the environment (or the matching command-line options).

The names and defaults are a contract with operators (docs/operations.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str | None  # None: the embedded PostgreSQL under data_dir/pg
    tls_dir: Path
    listen: str
    metrics_listen: str
    health_listen: str | None = None  # plaintext grpc.health.v1 only (probes); None: off

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        env = dict(os.environ) if env is None else env
        data_dir = Path(env.get("MEDSWITCH_DATA_DIR") or "./var")
        return cls(
            data_dir=data_dir,
            database_url=env.get("MEDSWITCH_DATABASE_URL") or None,
            tls_dir=Path(env.get("MEDSWITCH_TLS_DIR") or data_dir / "tls"),
            listen=env.get("MEDSWITCH_LISTEN") or "127.0.0.1:50051",
            metrics_listen=env.get("MEDSWITCH_METRICS_LISTEN") or "127.0.0.1:9464",
            health_listen=env.get("MEDSWITCH_HEALTH_LISTEN") or None,
        )

    @property
    def app_login(self) -> bool:
        """Commands log in as their role itself (serve as the application
        role, the operator's commands as the operator's): on the embedded
        server, whose local connections need no password. An external
        server's operator decides how its roles log in (db.open_database)."""
        return self.database_url is None
