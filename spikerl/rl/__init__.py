"""The RL algorithm and its loop: TD3 losses and learner, MLP networks, replay, observation
normaliser, envs, the collector, the update schedule, evaluation, run state and the training loop.
Actors come in as modules built by the caller: nothing here calls SNN code."""
