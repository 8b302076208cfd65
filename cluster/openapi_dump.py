"""Writes the API's OpenAPI document, from which the TypeScript client's types are
generated (`web/openapi.json` → `web/src/api/schema.d.ts`, via `make openapi`).

It builds the FastAPI app without serving it: nothing starts, nothing connects.
The output is deterministic (sorted keys, fixed indentation) so the committed
file can be compared with what the code produces (`tests/unit/test_openapi_dump.py`).

    python -m cluster.openapi_dump [PATH]   # default: web/openapi.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from lumalive.settings import Settings
from serve_app.app import create_app

__all__ = ["DEFAULT_PATH", "openapi_document", "render", "main"]

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "web" / "openapi.json"


def openapi_document() -> dict[str, Any]:
    """The schema FastAPI serves at /openapi.json, for default settings."""
    return create_app(Settings()).openapi()


def render(document: dict[str, Any]) -> str:
    """Stable text: the same app always gives the same bytes."""
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DEFAULT_PATH
    path.write_text(render(openapi_document()), encoding="utf-8")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
