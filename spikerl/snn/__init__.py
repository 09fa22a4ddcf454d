"""Spiking networks: snnTorch neurons behind one adapter (`neurons`), their through-time kernels,
observation encoders and the spiking actors. Knows nothing of RL."""
