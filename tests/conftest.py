"""Shared offline fixtures: a trained BPE tokenizer, tiny LMs of each family and a tiny open_clip ViT."""

import atexit
import gc
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never download (set before huggingface_hub is imported)

import pytest  # noqa: E402
import stand_ins  # noqa: E402

from recipe.offline import assets  # noqa: E402

WORDS = ["red", "green", "blue", "yellow", "circle", "square", "triangle", "a", "photo", "of", "the", "on",
         "big", "small", "left", "right", "image", "shows", "and", "with", "text", "document", "sentence"]


def corpus():
    import itertools
    lines = []
    for a, b, c in itertools.product(WORDS[:8], WORDS[8:16], WORDS[16:]):
        lines.append(f"{a} {b} {c}. The {c} is {a}, {b}!")
    return lines


@pytest.fixture(scope="session")
def assets_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("assets")


@pytest.fixture(scope="session")
def tokenizer_dir(assets_dir):
    return assets.train_tokenizer(corpus(), os.path.join(assets_dir, "tokenizer"), vocab_size=400)


@pytest.fixture(scope="session")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="session")
def lm_dir_factory(assets_dir, tokenizer):
    """`lm_dir_factory(family)` -> path of a saved tiny LM of that family (built once per session); the
    `stand_ins.REMOTE_LMS` kinds are remote-code folders with 16 padding rows past the tokenizer, as MPT has."""
    cache = {}

    def make(family: str) -> str:
        if family not in cache:
            out = os.path.join(assets_dir, f"lm-{family}")
            cache[family] = (stand_ins.write_remote_lm(family, out, len(tokenizer) + 16)
                             if family in stand_ins.REMOTE_LMS else assets.save_tiny_lm(family, out, len(tokenizer)))
        return cache[family]

    return make


@pytest.fixture(scope="session")
def vision_name(assets_dir):
    """Name of a registered tiny open_clip ViT (32 px images, 16 patch tokens of width 64)."""
    return assets.register_tiny_vision(os.path.join(assets_dir, "vision"))


@pytest.fixture
def s3_server(monkeypatch):
    """A real S3-speaking server (moto) on a free localhost port; yields a boto3 client and a fresh bucket."""
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    monkeypatch.setenv("S3_ENDPOINT_URL", f"http://{host}:{port}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=f"http://{host}:{port}")
    client.create_bucket(Bucket="data")
    yield client
    server.stop()


@pytest.fixture(autouse=True)
def release_streaming_shared_memory(monkeypatch):
    """Streaming keeps every shared-memory block it opens until interpreter exit (an atexit handler per
    block), and each new StreamingDataset attaches to the blocks of every live one. A training process
    builds its datasets once; a test session builds hundreds, and the open-file count grows past the
    limit. Release what each test opened when it ends."""
    from streaming.base.shared import memory

    opened = []
    original_init = memory.SharedMemory.__init__

    def tracking_init(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        opened.append(self)

    monkeypatch.setattr(memory.SharedMemory, "__init__", tracking_init)
    yield
    gc.collect()  # drop the datasets' numpy views of the blocks, which would keep them mapped
    for block in reversed(opened):
        atexit.unregister(block.cleanup)
        try:
            block.cleanup()
        except BufferError:  # still viewed by an object the test kept alive: left to atexit
            atexit.register(block.cleanup)


@pytest.fixture
def process_group(tmp_path):
    """A one-process gloo group (real DDP wrapping, DistributedSampler), torn down after the test; the group a
    Composer Trainer earlier in the session left initialised (world size 1) is used as it is."""
    import torch.distributed as dist

    if dist.is_initialized():
        assert dist.get_world_size() == 1
        yield
        return
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()
