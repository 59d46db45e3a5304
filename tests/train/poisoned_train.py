"""`python tests/train/poisoned_train.py POISON YAML [overrides]`: recipe/train.py's command line, with the
training loss multiplied by a factor at chosen batches (POISON like `5:nan,9:40`), to drive the spike guard
the way a diverging run would. The test-only callback is added to those the recipe builds."""

import sys

from composer.core import Callback

from recipe import train, trainer_parts


class PoisonLoss(Callback):
    def __init__(self, factors: dict[int, float]):
        self.factors = factors

    def after_loss(self, state, logger):
        factor = self.factors.get(int(state.timestamp.batch))
        if factor is not None:
            state.loss = {k: v * factor for k, v in state.loss.items()}


def main(argv: list[str]) -> int:
    factors = {int(b): float(f) for b, f in (item.split(":") for item in argv[0].split(","))}
    build = trainer_parts.build_callbacks
    trainer_parts.build_callbacks = lambda *a, **k: build(*a, **k) + [PoisonLoss(factors)]
    return train.cli(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
