"""Released OpenFlamingo weights by name: a local `checkpoint.pt`, a folder holding one, or a Hugging Face
Hub repo id (`openflamingo/OpenFlamingo-3B-vitl-mpt1b`), whose `checkpoint.pt` is fetched into the HF cache."""

from __future__ import annotations

import os

CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointNotFound(ValueError):
    """The named checkpoint cannot be had; the message is one line that says what to do."""


def is_hub_id(name: str) -> bool:
    """`org/name` that is not a local path."""
    return ("://" not in name and name.count("/") == 1 and not name.startswith(("/", ".", "~"))
            and not os.path.exists(name))


def resolve_openflamingo_checkpoint(name: str, key: str = "model.openflamingo_checkpoint") -> str:
    """Local path of the checkpoint `name` denotes; downloads a Hub repo's `checkpoint.pt` (cached)."""
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        path = os.path.join(path, CHECKPOINT_FILE)
    if os.path.isfile(path):
        return path
    if not is_hub_id(name):
        raise CheckpointNotFound(f"{key}: no such file: {path}")
    from huggingface_hub import constants, hf_hub_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return hf_hub_download(name, CHECKPOINT_FILE)
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as e:
        cause = "offline, and it is not in the cache" if isinstance(e, LocalEntryNotFoundError) else type(e).__name__
        raise CheckpointNotFound(
            f"{key}: cannot get {CHECKPOINT_FILE} of {name} from the Hugging Face Hub ({cause}); download it "
            f"elsewhere (`huggingface-cli download {name} {CHECKPOINT_FILE}`) and set {key} to the file, or copy "
            f"the cache folder models--{name.replace('/', '--')} into {constants.HF_HUB_CACHE}") from None
