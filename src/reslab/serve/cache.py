"""A bounded LRU cache of answers, keyed by the model and the SHA-256 of the uploaded bytes."""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Hashable

import numpy as np


def content_key(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class AnswerCache:
    """Probabilities of images already seen. Used from the event loop only, so no lock is needed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def get(self, key: Hashable) -> np.ndarray | None:
        value = self.entries.get(key)
        if value is not None:
            self.entries.move_to_end(key)
        return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        if self.size <= 0:
            return
        self.entries[key] = value
        self.entries.move_to_end(key)
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
