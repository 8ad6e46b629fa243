"""Message tags, one per kind of message, so every send and receive names what it carries."""

from enum import IntEnum


class Tag(IntEnum):
    GRADIENT = 10  # learner -> ps shard: float32 gradient slice
    STOP = 11  # any -> any: the sender is done (empty message)
    TRANSITIONS = 20  # actor -> replay shard: one block of transitions
    TRANSITIONS_SHM = 21  # actor -> replay shard on its node: (slot, rows) of the actor's outbox
    SAMPLE_REQUEST = 22  # learner -> replay shard: (rows, offset, inbox slot)
    SAMPLE_REPLY = 23  # replay shard -> learner on its node: statistics; the rows are in the learner's inbox
    SAMPLE_REPLY_BLOCK = 24  # replay shard -> learner elsewhere: statistics and the rows
    PRIORITIES = 25  # learner -> replay shard: new priorities for sampled slots
    TRAJECTORY = 50  # actor -> learner elsewhere: one unroll block, see comm.trajectories
    TRAJECTORY_SHM = 51  # actor -> learner on its node: (outbox slot, 0)
    TRAJECTORY_ACK = 52  # learner -> actor elsewhere: one send buffer is free again
    INFER_REQUEST = 60  # actor -> inference server elsewhere: the request block, see comm.inference
    INFER_SHM = 61  # actor -> inference server on its node: (k, 0), the request in the actor's segment
    INFER_REPLY = 62  # inference server -> actor elsewhere: the reply block
    INFER_REPLY_SHM = 63  # inference server -> actor on its node: (version, k), the reply in the actor's segment
    METRICS = 30  # actor -> lead learner: float64 [9], see comm.metrics
    CONTROL = 31  # lead learner -> other learners: float64 (env steps so far, stop flag)
    CHECKPOINT = 40  # lead learner -> any rank: int64 (checkpoint id, env steps, flags), see comm.checkpoint
    CHECKPOINT_DONE = 41  # any rank -> lead learner: uint8, its RNG state and part files (JSON + torch bytes)
    SIGNAL = 42  # any rank -> lead learner: int64 (signal number), a stop was asked for on that rank
    COLLECTED = 70  # PPO worker -> every other worker: this worker stopped collecting this round (comm.preempt)
    STATE = 43  # PBT top member's rank 0 -> bottom member's: uint8 JSON header, then uint8 body (comm.states)
