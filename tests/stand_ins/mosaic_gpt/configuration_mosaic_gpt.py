"""Stand-in for the MosaicGPT config of `anas-awadalla/mpt-1b-redpajama-200b` (the LM of OpenFlamingo-3B):
its own key names (`d_model`, `n_heads`, `n_layers`, `max_seq_len`, `mlp_ratio`), no `hidden_size` and no
`num_hidden_layers`. Written for these tests."""

from .blocks import StandInConfig


class MosaicGPTConfig(StandInConfig):
    model_type = "mosaic_gpt"

    def __init__(self, mlp_ratio=2, **kwargs):
        self.mlp_ratio = mlp_ratio
        super().__init__(**kwargs)
