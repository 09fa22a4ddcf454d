"""The process runtime: device choice, distributed ranks and collectives, mixed precision,
checkpoint files and stop signals. Imports nothing else of SpikeRL."""
