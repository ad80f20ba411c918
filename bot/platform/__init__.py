"""The TaskJuice platform side: API schemas and validation, the OpenAPI document, callbacks."""

from __future__ import annotations

__all__: list[str] = []
