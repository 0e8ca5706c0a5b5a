"""HTML reports of strokefc: participant pages, the group page and the methods boilerplate.

Pages are rendered from the Jinja2 templates next to this file with one small inline stylesheet; every
figure is embedded as a data URI, so a report is one file that works offline and can be moved alone.
"""

from __future__ import annotations

import base64
import datetime
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).parent
MIME = {".svg": "image/svg+xml", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def embed_image(path: str | Path | None) -> str | None:
    """A ``data:`` URI holding the image at ``path``, or None when the file is missing or empty."""
    if not path:
        return None
    path = Path(path)
    if not path.is_file() or path.stat().st_size == 0:
        return None
    mime = MIME.get(path.suffix.lower(), "application/octet-stream")
    return f"data:{mime};base64,{base64.b64encode(path.read_bytes()).decode('ascii')}"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES)),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["embed"] = embed_image
    env.filters["fmt"] = format_value
    return env


def format_value(value: Any, digits: int = 3) -> str:
    """Numbers rounded for reading; lists joined; None as an em dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1e4 else f"{value:.0f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(format_value(v, digits) for v in value)
    return str(value)


def render_page(template: str, **context: Any) -> str:
    """Render one page template with the shared stylesheet, version and generation time."""
    from bids_app import __version__

    context.setdefault("version", __version__)
    context.setdefault("generated", datetime.datetime.now().strftime("%Y-%m-%d %H:%M"))
    context["css"] = (TEMPLATES / "style.css").read_text()
    return _environment().get_template(template).render(**context)
