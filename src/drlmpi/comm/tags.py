"""Message tags, one per kind of message, so every send and receive names what it carries."""

from enum import IntEnum


class Tag(IntEnum):
    GRADIENT = 10  # learner -> ps shard: float32 gradient slice
    STOP = 11  # any -> any: the sender is done (empty message)
    TRANSITIONS = 20  # actor -> replay shard: one block of transitions
    SAMPLE_REQUEST = 21  # learner -> replay shard: how many to sample, beta
    SAMPLE_REPLY = 22  # replay shard -> learner: a sampled batch
    PRIORITIES = 23  # learner -> replay shard: new priorities for sampled slots
    STATS = 24  # replay shard -> learner: size and total priority
