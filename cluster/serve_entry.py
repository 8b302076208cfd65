"""Import path for `serve run` / RayService: the app built from environment settings.

    serve run cluster.serve_entry:app

Migrations are not applied here; run `lumalive migrate` once per release.
"""

from lumalive.settings import Settings
from serve_app.deployment import build_app

_settings = Settings()
if not _settings.database_url or not _settings.jwt_secret:
    raise RuntimeError("set DATABASE_URL and LUMALIVE_JWT_SECRET for a cluster deployment")
app = build_app(_settings)
