"""Public object ids in OpenAI's style (`file-…`, `ftjob-…`)."""

import secrets


def new_id(prefix: str) -> str:
    """A random, URL-safe id with the given prefix, e.g. `ftjob-3f9c…`."""
    return f"{prefix}-{secrets.token_hex(12)}"
