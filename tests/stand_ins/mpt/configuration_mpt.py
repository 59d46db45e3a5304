"""Stand-in for the MPT config of `anas-awadalla/mpt-7b` (the LM of OpenFlamingo-9B): `model_type: mpt`
(transformers has a native class of that name; `auto_map` must win), `d_model` / `n_heads` / `n_layers` /
`expansion_ratio`, no `hidden_size`. Written for these tests."""

from .blocks import StandInConfig


class MPTConfig(StandInConfig):
    model_type = "mpt"

    def __init__(self, expansion_ratio=2, **kwargs):
        self.expansion_ratio = expansion_ratio
        super().__init__(**kwargs)
