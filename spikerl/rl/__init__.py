"""The learning and its loop: the learners (learners/: TD3, DDPG, SAC on one shell), MLP networks,
replay, observation normaliser, envs, the collector, the update schedule, evaluation, run state and
the training loop.
Actors come in as modules built by the caller; the one SNN import is `split_sign`, the two-neuron
split that DSRL's critic shares with its encoder."""
