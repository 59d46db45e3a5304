"""Composer's CheckpointSaver, plus a manifest after every save and retention that counts every checkpoint
in the folder (earlier attempts of the run included), not only those this process wrote."""

from __future__ import annotations

import os
import shutil
from typing import Any

from composer.callbacks import CheckpointSaver
from composer.core import State
from composer.loggers import Logger
from composer.utils import dist
from composer.utils.checkpoint import _TORCH_DISTRIBUTED_CHECKPOINTS_METADATA_FILENAME

from recipe.checkpoints.manifest import (FORMAT, MANIFEST_SUFFIX, checkpoint_batch, manifest_name, sha256_file,
                                         write_json_atomic)


class VerifiedCheckpointSaver(CheckpointSaver):
    def __init__(self, *, signature: dict[str, Any], config_sha256: str, num_checkpoints_to_keep: int = -1,
                 **kwargs):
        # Composer's own rotation only knows this process's saves; ours lists the folder.
        super().__init__(num_checkpoints_to_keep=-1, **kwargs)
        self.keep = num_checkpoints_to_keep
        self.signature = signature
        self.config_sha256 = config_sha256

    def _save_checkpoint(self, state: State, logger: Logger):
        before = len(self.saved_checkpoints)
        super()._save_checkpoint(state, logger)
        saved = self.saved_checkpoints[-1] if len(self.saved_checkpoints) > before else None
        sharded = state.fsdp_sharded_state_dict_enabled
        # Each rank hashes what it wrote (a whole file, or its shard plus, on rank 0, the DCP metadata);
        # rank 0 writes one manifest for all.
        mine = {}
        if saved is not None:
            own, prefix = [saved], ""
            if sharded:
                folder = os.path.dirname(saved)
                prefix = os.path.basename(folder) + "/"
                if dist.get_global_rank() == 0:
                    own.append(os.path.join(folder, _TORCH_DISTRIBUTED_CHECKPOINTS_METADATA_FILENAME))
            mine = {prefix + os.path.basename(p): {"size": os.path.getsize(p), "sha256": sha256_file(p)} for p in own}
        files = {k: v for part in dist.all_gather_object(mine) for k, v in part.items()}
        if dist.get_global_rank() != 0 or not files:
            return
        name = os.path.basename(os.path.dirname(saved)) if sharded else os.path.basename(saved)
        local = os.path.join(self._local_folder(state), manifest_name(name))
        write_json_atomic({"format": FORMAT, "checkpoint": name, "batch": int(state.timestamp.batch),
                           "sample": int(state.timestamp.sample), "world_size": dist.get_world_size(),
                           "signature": self.signature, "config_sha256": self.config_sha256, "files": files}, local)
        if self.remote_uploader is not None and self.remote_file_name is not None:
            remote_dir = os.path.dirname(self.remote_file_name.format(state).lstrip("/"))
            self.remote_uploader.upload_file_async(remote_file_name=os.path.join(remote_dir, manifest_name(name)),
                                                   file_path=local, overwrite=True)
        if self.keep >= 0:
            self._retain(self._local_folder(state))

    def _local_folder(self, state: State) -> str:
        from composer.utils import format_name_with_dist

        return format_name_with_dist(self.folder, state.run_name)

    def _retain(self, folder: str) -> None:
        """Delete the oldest verified-by-manifest checkpoints beyond `keep` (rank 0, local copies only)."""
        names = [n[:-len(MANIFEST_SUFFIX)] for n in os.listdir(folder) if n.endswith(MANIFEST_SUFFIX)]
        done = sorted((checkpoint_batch(n), n) for n in names if checkpoint_batch(n) is not None)
        for _, name in done[:max(len(done) - self.keep, 0)]:
            path = os.path.join(folder, name)
            if os.path.isdir(path):
                shutil.rmtree(path)
            elif os.path.exists(path):
                os.remove(path)
            os.remove(os.path.join(folder, manifest_name(name)))
