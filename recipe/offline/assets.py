"""Stand-ins for Hub assets, built from configs only: a BPE tokenizer, tiny Hugging Face causal LMs (and a
text-only lesson for one), tiny open_clip ViTs."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

LM_FAMILIES = ("llama", "mistral", "qwen2", "mpt", "gpt_neox", "opt", "gpt2", "gptj")


def train_tokenizer(texts: Iterable[str], out_dir: str, vocab_size: int = 512) -> str:
    """Train a byte-level BPE tokenizer on `texts` and save it as a Hugging Face fast tokenizer.

    It has an `<|endoftext|>` eos/bos token and no pad token, like the GPT-NeoX/MPT tokenizers the
    reference recipes use, so the Flamingo builder adds `<PAD>` exactly as it would for them.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>", unk_token="<|endoftext|>"
    )
    fast.save_pretrained(out_dir)
    return out_dir


def tiny_lm_config(family: str, vocab_size: int, hidden: int = 64, layers: int = 4, heads: int = 4):
    """A `transformers` config of a tiny causal LM of the given family."""
    import transformers as tf

    common = dict(vocab_size=vocab_size)
    if family in ("llama", "mistral", "qwen2"):
        cls = {"llama": tf.LlamaConfig, "mistral": tf.MistralConfig, "qwen2": tf.Qwen2Config}[family]
        return cls(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                   num_attention_heads=heads, num_key_value_heads=max(1, heads // 2),
                   max_position_embeddings=512, tie_word_embeddings=False, **common)
    if family == "mpt":
        return tf.MptConfig(d_model=hidden, n_heads=heads, n_layers=layers, max_seq_len=512, expansion_ratio=2, **common)
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
                                num_attention_heads=heads, max_position_embeddings=512, tie_word_embeddings=False,
                                **common)
    if family == "opt":
        return tf.OPTConfig(hidden_size=hidden, ffn_dim=hidden * 2, num_hidden_layers=layers,
                            num_attention_heads=heads, max_position_embeddings=512, word_embed_proj_dim=hidden,
                            **common)
    if family == "gpt2":
        return tf.GPT2Config(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=512, **common)
    if family == "gptj":
        return tf.GPTJConfig(n_embd=hidden, n_layer=layers, n_head=heads, n_positions=512, rotary_dim=8, **common)
    raise ValueError(f"unknown LM family {family!r}; expected one of {', '.join(LM_FAMILIES)}")


def save_tiny_lm(family: str, out_dir: str, vocab_size: int, seed: int = 0, **sizes) -> str:
    """Build a randomly initialised tiny causal LM of `family` and save it with `save_pretrained`."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(tiny_lm_config(family, vocab_size, **sizes))
    model.save_pretrained(out_dir)
    return out_dir


def teach_lm(lm_dir: str, tokenizer_dir: str, texts: list[str], steps: int = 200, seed: int = 0,
             batch_size: int = 32, lr: float = 3e-3) -> None:
    """Train the saved LM in `lm_dir` on `texts` (each followed by EOS, random batches) and save it back: a frozen
    LM that already knows the texts' language leaves Flamingo training only what the images show."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    model = AutoModelForCausalLM.from_pretrained(lm_dir)
    enc = [tok(t + tok.eos_token)["input_ids"] for t in texts]
    ids = torch.full((len(enc), max(map(len, enc))), tok.eos_token_id)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(enc):
        ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    labels = ids.masked_fill(mask == 0, -100)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        pick = torch.randint(len(enc), (batch_size,), generator=g)
        loss = model(input_ids=ids[pick], attention_mask=mask[pick], labels=labels[pick]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(lm_dir)


def tiny_vision_config(image_size: int = 32, width: int = 64, layers: int = 2, patch_size: int = 8) -> dict:
    """An open_clip model config of a tiny ViT. The text tower is tiny too (open_clip needs one; Flamingo drops it)."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": image_size, "layers": layers, "width": width, "patch_size": patch_size},
        "text_cfg": {"context_length": 16, "vocab_size": 64, "width": 32, "heads": 2, "layers": 1},
    }


def _write_json(path: str, document: dict) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"  # processes writing the same file never read a half-written one
    with open(tmp, "w") as f:
        json.dump(document, f)
    os.replace(tmp, path)


def register_tiny_vision(out_dir: str, name: str = "tiny-vit", **sizes) -> str:
    """Write and register (in this process) a `tiny_vision_config(**sizes)`; returns the model name to pass to
    `open_clip.create_model`."""
    import open_clip

    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, f"{name}.json")
    _write_json(path, tiny_vision_config(**sizes))
    open_clip.add_model_config(path)
    return name


def write_tiny_vision(out_dir: str, **sizes) -> str:
    """An open_clip `local-dir:` model folder of a `tiny_vision_config(**sizes)` (random weights); returns its
    name, which any process can load (a registered name exists only in the process that registered it)."""
    os.makedirs(out_dir, exist_ok=True)
    _write_json(os.path.join(out_dir, "open_clip_config.json"),
                {"model_cfg": tiny_vision_config(**sizes), "preprocess_cfg": {}})
    return f"local-dir:{out_dir}"
