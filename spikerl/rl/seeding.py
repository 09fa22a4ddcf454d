"""The seeds a run derives from its `seed`, in one place for every module that needs them.

Training env copy i of rank r is seeded seed + r * env.num_envs + i (spikerl.job.build_loop); evaluation
episode k is reset with seed + EVAL_SEED_OFFSET + k, whatever the number of ranks (spikerl.rl.evaluation),
and re-evaluating a saved actor (spikerl.evaluate, spikerl.export) starts from that same seed, so that it
reproduces the training run's own evaluations. Quantisation-aware fine-tuning (spikerl/export/qat.py)
seeds its env, replay sampler and torch's generator with seed + QAT_SEED_OFFSET, and ANN-to-SNN
conversion (spikerl/convert.py) its calibration episodes with seed + CALIBRATION_SEED_OFFSET + k: episodes
and draws of their own, neither the training's nor the evaluations'. This module imports nothing: any
module may use it.
"""

EVAL_SEED_OFFSET = 10_000
QAT_SEED_OFFSET = 20_000
CALIBRATION_SEED_OFFSET = 20_000
