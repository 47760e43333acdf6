"""One validated settings object, built at the edge from ``BRANCHFLOW_*`` variables and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Embedded defaults: a SQLite file and a folder of ``.eml`` files under ``data_dir``."""

    model_config = SettingsConfigDict(env_prefix="BRANCHFLOW_", extra="ignore")

    data_dir: Path = Path("branchflow-data")
    database_url: str = ""
    smtp_host: str = ""
    smtp_port: int = 25
    smtp_user: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    smtp_tls: bool = False
    smtp_sender: str = "branchflow <noreply@branchflow.local>"
    smtp_timeout: float = 30.0
    smtp_concurrency: int = Field(default=4, ge=1, le=64)
    org_department_email: str = ""
    secret_key: str = ""  # signs session cookies and API tokens; empty: generated into <data_dir>/secret.key

    audit_key_file: Path | None = None  # signs checkpoints; default <data_dir>/audit.key — keep it elsewhere
    audit_origin: str = "branchflow.local/audit"  # the checkpoints' origin line and the key's name

    # --- running as a service (issue 9): logs and the reverse proxy ---------------------------------
    log_format: Literal["text", "json"] = "text"  # one line per event; json: one JSON object per line
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "debug", "info", "warning", "error"] = "INFO"
    # addresses (or CIDR networks), comma-separated, whose X-Forwarded-For/-Proto are believed; empty: none
    trusted_proxies: str = ""

    # --- log-in security (issue 14): server-side sessions and cookies ---------------------------------
    session_idle_minutes: int = Field(default=30, ge=1, le=24 * 60)  # a page session ends after this idle time
    session_absolute_hours: int = Field(default=12, ge=1, le=24 * 30)  # … and this long after the log-in
    cookie_secure: bool = False  # force the Secure flag on cookies (it is set anyway on https requests)

    # --- attachments (issue 16): the content-addressed blob store ---------------------------------------
    blob_url: str = ""  # empty: the folder <data_dir>/files; file:///path; s3://bucket/prefix (the [s3] extra)
    s3_endpoint_url: str = ""  # an S3-compatible server (MinIO, Ceph …); empty: AWS
    s3_region: str = ""
    s3_access_key_id: str = ""  # empty: boto3's usual sources (environment, ~/.aws, instance role)
    s3_secret_access_key: str = ""

    @property
    def audit_key_path(self) -> Path:
        return self.audit_key_file or self.data_dir / "audit.key"

    @property
    def url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'branchflow.db').as_posix()}"

    @property
    def mail_sink_dir(self) -> Path:
        return self.data_dir / "mail"
