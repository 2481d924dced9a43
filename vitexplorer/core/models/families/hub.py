"""Whether the Hugging Face hub can be reached, found out in one request: the hub client
retries a connection that fails for about half a minute per file, so offline a load would wait
that long before saying anything (timm's weights and hf: models both come from the hub)."""

from __future__ import annotations

import socket


def probe(repo: str, filename: str, revision: str | None = None) -> str | None:
    """Why the hub cannot be reached (one request for ``filename``'s metadata, no retries), or
    None when it answered (whatever it answered: a missing file is for the download to say)."""
    import huggingface_hub
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = huggingface_hub.hf_hub_url(repo, filename, revision=revision)
    try:
        huggingface_hub.get_hf_file_metadata(url, retry_on_errors=False)
    except Exception as exc:  # anything but not reaching it is the download's
        return unreachable(exc)
    return None


def unreachable(exc: BaseException) -> str | None:
    """Why the hub could not be reached at all, when ``exc`` (or what caused it) says so: a
    connection refused, a name not resolved, a timeout on connecting, offline mode."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    kinds = _connect_errors()
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kinds):
            return str(seen).strip() or type(seen).__name__
        if isinstance(seen, (LocalEntryNotFoundError, OfflineModeIsEnabled)):
            return "the hub client found no connection"
        seen = seen.__cause__ or seen.__context__
    return None


def _connect_errors() -> tuple[type[BaseException], ...]:
    """The errors of not connecting: the socket's, and those of the HTTP client the hub client
    uses (httpx2 in huggingface_hub 2, httpx in 1)."""
    import importlib

    kinds: list[type[BaseException]] = [ConnectionError, socket.gaierror, socket.timeout]
    for name in ("httpx2", "httpx"):
        try:
            client = importlib.import_module(name)
        except ImportError:
            continue
        kinds += [
            getattr(client, k) for k in ("ConnectError", "ConnectTimeout") if hasattr(client, k)
        ]
    return tuple(kinds)
