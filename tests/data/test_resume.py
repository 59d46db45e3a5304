"""Deterministic mid-epoch resumption through `MultiSourceDataset.state_dict/load_state_dict`, called as
Composer calls them: the per-step sample order of every source after a resume equals the uninterrupted run's,
across epoch boundaries, worker counts and (with a constant global batch) rank counts."""

import dataclasses
import json
import os
import socket
import subprocess
import sys

import pytest

from recipe.data.sources import build_train_dataloader

HERE = os.path.dirname(__file__)
STEPS_PER_EPOCH = 10  # min(40 // 4, 24 // 2) with the `sources` fixture


def record(loader, n):
    """The first `n` steps' sample indices, continuing into further epochs as Composer does."""
    steps = []
    while len(steps) < n:
        for batch in loader:
            steps.append({name: b["sample_idx"].tolist() for name, b in batch.items()})
            if len(steps) == n:
                break
    return steps


def loader(sources, tok, tf, workers):
    return build_train_dataloader(sources, tok, tf, seed=0, num_workers=workers).dataloader


@pytest.fixture(scope="module")
def reference_run(sources, flamingo_tokenizer, image_transform):
    return record(loader(sources, flamingo_tokenizer, image_transform, 0), 2 * STEPS_PER_EPOCH + 4)


def test_epoch_structure(sources, flamingo_tokenizer, image_transform, reference_run):
    dl = loader(sources, flamingo_tokenizer, image_transform, 0)
    assert len(dl) == STEPS_PER_EPOCH and dl.dataset.samples_per_step == 6
    # some single-image documents are dropped and substituted, so the order checks cover substitution too
    assert sum(int(b["mmc4"]["rejected"].sum()) for b in dl) > 0
    first, second = reference_run[:STEPS_PER_EPOCH], reference_run[STEPS_PER_EPOCH:2 * STEPS_PER_EPOCH]
    assert all(len(s["laion"]) == 4 and len(s["mmc4"]) == 2 for s in reference_run)
    assert first != second  # a new epoch reshuffles
    # the mmc4 source mixes its two streams (mmc4 has 40 docs at indices 0..39, chatgpt 12 at 40..51)
    docs = [i for s in first for i in s["mmc4"]]
    assert any(i < 40 for i in docs) and any(i >= 40 for i in docs)


@pytest.mark.parametrize("workers", [0, 2])
def test_order_does_not_depend_on_worker_count(workers, sources, flamingo_tokenizer, image_transform,
                                               reference_run):
    assert record(loader(sources, flamingo_tokenizer, image_transform, workers), 14) == reference_run[:14]


@pytest.mark.parametrize("stop", [3, 7, STEPS_PER_EPOCH])
def test_resume_mid_epoch_and_at_epoch_end(stop, sources, flamingo_tokenizer, image_transform, reference_run):
    first = loader(sources, flamingo_tokenizer, image_transform, 2)
    assert record(first, stop) == reference_run[:stop]
    # Composer: state_dict(sample_in_epoch, from_beginning=True), sample_in_epoch summed over sources and ranks
    state = first.dataset.state_dict(stop * first.dataset.samples_per_step, True)
    assert state["steps"] == stop
    del first
    second = loader(sources, flamingo_tokenizer, image_transform, 2)
    second.dataset.load_state_dict(json.loads(json.dumps(state)))
    assert record(second, 12) == reference_run[stop:stop + 12]


def test_resume_after_epoch_checkpoint(sources, flamingo_tokenizer, image_transform, reference_run):
    """At an epoch checkpoint Composer has already reset sample_in_epoch to 0: resume at the next epoch."""
    first = loader(sources, flamingo_tokenizer, image_transform, 0)
    record(first, STEPS_PER_EPOCH)
    assert sum(1 for _ in first) == STEPS_PER_EPOCH  # a second full epoch
    state = first.dataset.state_dict(0, True)
    second = loader(sources, flamingo_tokenizer, image_transform, 0)
    second.dataset.load_state_dict(state)
    assert record(second, 4) == reference_run[2 * STEPS_PER_EPOCH:2 * STEPS_PER_EPOCH + 4]


def test_resume_reads_only_what_it_yields(sources, flamingo_tokenizer, image_transform):
    """No spinning: after a resume at any step, the first batch costs one batch of reads."""
    for stop in (1, 9):
        first = loader(sources, flamingo_tokenizer, image_transform, 0)
        record(first, stop)
        state = first.dataset.state_dict(stop * first.dataset.samples_per_step, True)
        second = loader(sources, flamingo_tokenizer, image_transform, 0)
        second.dataset.load_state_dict(state)
        counts = {}
        for name, ds in second.dataset.datasets.items():
            def counted(idx, name=name, read=ds.get_raw):
                counts[name] = counts.get(name, 0) + 1
                return read(idx)
            ds.get_raw = counted
        batch = next(iter(second))
        assert counts["mmc4"] == 2 + int(batch["mmc4"]["rejected"].sum())
        assert counts["laion"] == 4 + int(batch["laion"]["rejected"].sum())


def test_load_state_rejects_a_different_source_set(sources, flamingo_tokenizer, image_transform):
    dl = loader(sources, flamingo_tokenizer, image_transform, 0)
    state = dl.dataset.state_dict(0, True)
    state["sources"].pop("mmc4")
    with pytest.raises(ValueError, match="checkpoint has sources"):
        dl.dataset.load_state_dict(state)
    with pytest.raises(ValueError, match="whole number of steps"):
        dl.dataset.state_dict(5, True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(tmp_path, tag, world, sources, tokenizer_dir, steps, load_state=None):
    spec = {"tokenizer_dir": tokenizer_dir, "steps": steps, "num_workers": 1, "seed": 0, "load_state": load_state,
            "sources": {n: dataclasses.asdict(c) for n, c in sources.items()}}
    spec_path = tmp_path / f"{tag}.spec.json"
    spec_path.write_text(json.dumps(spec))
    prefix = str(tmp_path / tag)
    port = str(free_port())
    procs = []
    for rank in range(world):
        env = dict(os.environ, RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                   LOCAL_WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1", MASTER_PORT=port,
                   PYTHONPATH=os.pathsep.join([os.getcwd(), os.environ.get("PYTHONPATH", "")]))
        procs.append(subprocess.Popen([sys.executable, os.path.join(HERE, "resume_worker.py"), str(spec_path), prefix],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for p in procs:
        out, _ = p.communicate(timeout=240)
        assert p.returncode == 0, out.decode()[-3000:]
    ranks = [json.load(open(f"{prefix}.rank{r}.json")) for r in range(world)]
    return ranks, f"{prefix}.state.json"


def global_order(ranks):
    """Streaming deals each node's sample order to ranks round-robin: rebuild the global per-step order."""
    steps = []
    for per_rank in zip(*ranks):
        steps.append({n: [i for group in zip(*(r[n] for r in per_rank)) for i in group] for n in per_rank[0]})
    return steps


def halve(sources):
    return {n: dataclasses.replace(c, batch_size=c.batch_size // 2) for n, c in sources.items()}


def test_elastic_resume_two_ranks_to_one(tmp_path, sources, tokenizer_dir, reference_run):
    """Same global batch on 2 ranks (gloo, one process per rank) as on 1: same order, and a 2-rank
    checkpoint resumes on 1 rank where the 2-rank run stopped."""
    two, state = launch(tmp_path, "two", 2, halve(sources), tokenizer_dir, steps=6)
    assert all(len(s["laion"]) == 2 and len(s["mmc4"]) == 1 for r in two for s in r)
    assert global_order(two) == reference_run[:6]
    one, _ = launch(tmp_path, "one", 1, sources, tokenizer_dir, steps=8, load_state=state)
    assert one[0] == reference_run[6:14]
