"""Credential-looking values masked, for every place a config is logged or saved."""

from __future__ import annotations


def redact(obj, _key: str = ""):
    """A copy of a config container with credential-looking values replaced, for logs and W&B."""
    if isinstance(obj, dict):
        return {k: ("***" if _is_secret_key(str(k)) and v is not None else redact(v, str(k)))
                for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact(v) for v in obj]
    return obj


_SECRET_WORDS = ("secret", "password", "passwd", "token", "api_key", "apikey", "access_key", "credential",
                 "private_key", "auth")


def _is_secret_key(key: str) -> bool:
    k = key.lower()
    # `tokenizer_path`, `max_new_tokens` and friends are not secrets.
    if k.startswith("tokenizer") or k.endswith("tokens") or k in ("max_new_tokens",):
        return False
    return any(word in k for word in _SECRET_WORDS)
