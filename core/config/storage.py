"""The ``storage:`` section: where report files (and the signal history) are kept.

One object store for the whole system, so the runner that writes a report and the web
process that serves it (different pods, different disks) meet in one place. ``local`` is a
folder (the embedded default); ``s3`` is any S3-compatible store (MinIO, AWS); ``azure`` is
Azure Blob Storage. Credentials are secrets (``{env: NAME}`` / ``{file: PATH}``) or, when
none is given, the platform's workload identity read from the environment (EKS/IRSA's
``AWS_WEB_IDENTITY_TOKEN_FILE`` + ``AWS_ROLE_ARN``; AKS's ``AZURE_FEDERATED_TOKEN_FILE``,
``AZURE_CLIENT_ID``, ``AZURE_TENANT_ID``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from core.config.base import OptionalSecret, StrictModel


class StorageConfig(StrictModel):
    """Settings of the object store. Every key has a default and a description."""

    type: Literal["local", "s3", "azure"] = Field(
        default="local", description="local (a folder), s3 (S3-compatible) or azure (Blob)."
    )
    root: str = Field(
        default="",
        description="local: the folder; empty = runner.output_dir (reports stay where written).",
    )
    bucket: str = Field(default="", description="s3: the bucket; azure: the container.")
    prefix: str = Field(default="", description="A key prefix inside the bucket or container.")
    endpoint: str = Field(
        default="",
        description="s3: the server URL (MinIO); azure: the blob endpoint (empty = Azure's).",
    )
    region: str = Field(default="us-east-1", description="s3: the region (MinIO ignores it).")
    access_key_id: OptionalSecret = Field(
        default=None, description="s3: access key ({env: NAME}); none = workload identity."
    )
    secret_access_key: OptionalSecret = Field(
        default=None, description="s3: secret key ({env: NAME} or {file: PATH})."
    )
    account_name: str = Field(default="", description="azure: the storage account.")
    account_key: OptionalSecret = Field(
        default=None, description="azure: account key ({env: NAME}); none = workload identity."
    )
    allow_http: bool = Field(
        default=False, description="Allow a plain-HTTP endpoint (on-premises MinIO, tests)."
    )
    chunk_bytes: int = Field(
        default=1 << 20,
        ge=4096,
        description="Download chunk size: a file is streamed in pieces of this size at most.",
    )

    @model_validator(mode="after")
    def _complete(self) -> StorageConfig:
        if self.type in ("s3", "azure") and not self.bucket:
            raise ValueError(f"storage.type {self.type} needs storage.bucket")
        if self.type == "azure" and not self.account_name:
            raise ValueError("storage.type azure needs storage.account_name")
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("give both access_key_id and secret_access_key, or neither")
        return self
