"""The loader inside a real Composer Trainer (CPU, a one-parameter ComposerModel): microbatching through
`split_batch`, checkpointed dataset state, and a resumed run that continues the sample order without spinning,
from a mid-epoch and from an end-of-epoch checkpoint."""

import glob
import os

import pytest
import torch
from composer import Callback, Trainer
from composer.models import ComposerModel

from recipe.data.sources import build_train_dataloader


class TinyModel(ComposerModel):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def forward(self, batch):
        return sum(b["images"].mean() * self.w for b in batch.values())

    def loss(self, outputs, batch):
        return (outputs - 1.0) ** 2


class RecordOrder(Callback):
    """Records each step's sample indices as Composer receives them."""

    def __init__(self):
        self.steps = []

    def after_dataloader(self, state, logger):
        self.steps.append({n: b["sample_idx"].tolist() for n, b in state.batch.items()})


def fit(spec, save_folder, duration, load_path=None):
    rec = RecordOrder()
    model = TinyModel()
    trainer = Trainer(model=model, train_dataloader=spec, max_duration=duration, device="cpu",
                      optimizers=torch.optim.SGD(model.parameters(), lr=0.1), device_train_microbatch_size=2,
                      save_folder=save_folder, save_interval="5ba", load_path=load_path, callbacks=[rec],
                      progress_bar=False, seed=17)
    trainer.fit()
    return rec.steps, trainer


@pytest.fixture(scope="module")
def first_run(sources, flamingo_tokenizer, image_transform, tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("ckpt"))
    spec = build_train_dataloader(sources, flamingo_tokenizer, image_transform, seed=0, num_workers=2)
    steps, trainer = fit(spec, folder, "14ba")
    assert int(trainer.state.timestamp.epoch) == 1 and int(trainer.state.timestamp.batch_in_epoch) == 4
    trainer.close()
    return steps, folder


@pytest.mark.parametrize("at", [5, 10])
def test_composer_resume_continues_the_order(at, first_run, sources, flamingo_tokenizer, image_transform,
                                             tmp_path):
    steps, folder = first_run
    assert len(steps) == 14
    ckpt = glob.glob(os.path.join(folder, f"ep*-ba{at}-rank0.pt"))
    assert len(ckpt) == 1
    spec = build_train_dataloader(sources, flamingo_tokenizer, image_transform, seed=0, num_workers=2)
    resumed, trainer = fit(spec, str(tmp_path), "14ba", load_path=ckpt[0])
    assert trainer.state.dataset_resumption == {"train": True}  # the dataset resumed itself: no spinning
    assert resumed == steps[at:]
    trainer.close()
