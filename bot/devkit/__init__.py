"""Stand-ins for the outside world (Slack, mail, the platform) for tests and `taskjuice-bot dev`.

Nothing here is used by `taskjuice-bot serve`.
"""

from __future__ import annotations

__all__: list[str] = []
