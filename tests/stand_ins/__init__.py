"""Local `trust_remote_code` folders standing in for the remote-code LMs of the released OpenFlamingo
models (our own small code with their traits; see each modeling file's docstring)."""

import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))

# kind -> (folder name the reference recognises, code files, auto_map)
REMOTE_LMS = {
    "mosaic_gpt": ("mpt-1b-redpajama-200b", ("mosaic_gpt/configuration_mosaic_gpt.py",
                                             "mosaic_gpt/modeling_mosaic_gpt.py"),
                   {"AutoConfig": "configuration_mosaic_gpt.MosaicGPTConfig",
                    "AutoModelForCausalLM": "modeling_mosaic_gpt.MosaicGPT"}),
    "mpt_remote": ("mpt-7b", ("mpt/configuration_mpt.py", "mpt/modeling_mpt.py"),
                   {"AutoConfig": "configuration_mpt.MPTConfig", "AutoModelForCausalLM": "modeling_mpt.MPTForCausalLM"}),
}


def write_remote_lm(kind: str, root: str, vocab_size: int, seed: int = 0, **sizes) -> str:
    """Write a random-weight stand-in of `kind` into `root/<its hub name>`; returns that folder.

    `vocab_size` is the embedding's row count (padded past the tokenizer, as MPT's 50432 rows are)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    name, files, auto_map = REMOTE_LMS[kind]
    out = os.path.join(root, name)
    os.makedirs(out, exist_ok=True)
    for f in ("blocks.py", *files):
        shutil.copy(os.path.join(HERE, f), out)
    model_type = "mosaic_gpt" if kind == "mosaic_gpt" else "mpt"
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump({"model_type": model_type, "auto_map": auto_map, "vocab_size": vocab_size, **sizes}, fh)
    config = AutoConfig.from_pretrained(out, trust_remote_code=True)
    torch.manual_seed(seed)
    AutoModelForCausalLM.from_config(config, trust_remote_code=True).save_pretrained(out)
    return out
