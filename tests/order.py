"""The samples a rank trains on in an epoch, in order, as the loaders take them from ``reslab.data.sampling``."""

from torch import Tensor

from reslab.data.sampling import epoch_sequence, rank_positions


def epoch_order(n: int, seed: int, epoch: int, shuffle: bool, rank: int = 0, world_size: int = 1,
                batch_size: int = 1, drop_last: bool = False, weights: Tensor | None = None) -> Tensor:
    return epoch_sequence(n, seed, epoch, shuffle, weights)[rank_positions(n, rank, world_size, batch_size, drop_last)]
