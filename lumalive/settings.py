"""The one place that reads the environment. Everything else receives a `Settings`."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Runtime configuration. Unprefixed names follow common conventions
    (DATABASE_URL, RAY_ADDRESS); the rest are LUMALIVE_*."""

    model_config = SettingsConfigDict(env_prefix="LUMALIVE_", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    ray_address: str | None = Field(default=None, validation_alias="RAY_ADDRESS")
    data_dir: Path = Path(".lumalive")
    # Unset: a random secret is made once and kept in data_dir (see with_secret).
    jwt_secret: str | None = None
    jwt_audience: str = "authenticated"
    environment: str = "development"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    dashboard_host: str = "127.0.0.1"
    dashboard_port: int = 8265
    rtmp_host: str = "0.0.0.0"
    rtmp_port: int = 1935
    public_host: str = "127.0.0.1"
    app_role: str = "lumalive_app"
    api_replicas: int = 1
    max_ongoing_requests: int = 1000
    chat_rate_per_s: float = 5.0
    chat_burst: int = 10
    reaction_rate_per_s: float = 20.0
    reaction_burst: int = 40
    chat_moderation_threshold: float = 0.8
    visibility_cache_s: float = 2.0
    max_body_bytes: int = 65_536
    db_pool_size: int = 10
    # Media pipeline (RTMP ingest -> segments -> moderation/enhancement/encoding -> HLS).
    media_workers: int = Field(default=2, ge=1)  # pool actors, one segment at a time each
    media_gpu_share: float = Field(default=0.5, gt=0, le=1)  # GPU per worker, on GPU clusters
    media_pool_idle_s: float = 60.0  # idle workers give their CPUs back after this long
    media_dir: Path | None = None  # segment storage root; unset: data_dir/media
    media_max_height: int | None = None  # drop ladder rungs above this (short side), e.g. 720
    segment_seconds: float = Field(default=2.0, gt=0)
    x264_preset: str = "veryfast"
    # Hardware video encoders (NVENC): "auto" uses one where this node's FFmpeg can open
    # it (L4/L40S; not H100/H200, which have no NVENC) and falls back to x264/x265 with
    # one log line; "off" is software only; "require" fails segments without one.
    encoder_hardware: Literal["off", "auto", "require"] = "auto"
    moderation_fps: float = Field(default=1.0, ge=0)  # frames scored per second; 0 disables
    nsfw_threshold: float = Field(default=0.8, ge=0, le=1)
    nsfw_end_stream: bool = True  # a segment over the threshold ends the stream
    reconnect_grace_s: float = Field(default=30.0, ge=0)
    playback_ttl_s: int = Field(default=7200, gt=0)
    live_window_segments: int = Field(default=6, ge=1)

    @field_validator("database_url")
    @classmethod
    def _normalise_dsn(cls, v: str | None) -> str | None:
        """Accept plain postgres:// URLs and pin SQLAlchemy to psycopg 3."""
        if not v:
            return None
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix) :]
        return v

    @field_validator("data_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        """Absolute, because Ray workers run in other working directories."""
        return v.expanduser().resolve()

    @field_validator("jwt_secret")
    @classmethod
    def _secret_long_enough(cls, v: str | None) -> str | None:
        if v is not None and len(v) < 32:
            raise ValueError("LUMALIVE_JWT_SECRET must be at least 32 characters")
        return v

    def with_secret(self) -> Settings:
        """Settings whose JWT secret is set: from the environment, else a random
        one generated once into data_dir/jwt_secret (mode 600), so `lumalive
        token` and the API agree without a secret ever living in the repo."""
        if self.jwt_secret:
            return self
        path = self.data_dir / "jwt_secret"
        if not path.exists():
            self.data_dir.mkdir(parents=True, exist_ok=True)
            path.touch(mode=0o600)
            path.write_text(secrets.token_urlsafe(48))
        return self.model_copy(update={"jwt_secret": path.read_text().strip()})

    @property
    def api_url(self) -> str:
        return f"http://{self.api_host}:{self.api_port}"

    @property
    def rtmp_url(self) -> str:
        return f"rtmp://{self.public_host}:{self.rtmp_port}/live"

    @property
    def media_root(self) -> Path:
        """Where segments are stored (LocalStorage); shared by the pool and the API."""
        return (self.media_dir or self.data_dir / "media").expanduser().resolve()
