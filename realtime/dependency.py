"""The failure of a backend the server depends on (Redis): callers answer 503 or retry.

The message names the backend and may carry internal addresses: it goes to the log and
its ``operation`` to ``/metrics``, never into an answer to a caller.
"""

from __future__ import annotations


class DependencyError(RuntimeError):
    """A backend could not be reached or failed; nothing of the operation may be assumed done."""
