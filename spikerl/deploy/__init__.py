"""Running an exported bundle on a third party's neuromorphic models (`python -m spikerl.deploy`).

    lava_host     drive Lava's bit-accurate Loihi models (a second Python environment, `make lava`) with a
                  `--quantize int8` bundle: compare them with the integer simulation on recorded
                  observations, and act with them in the task
    lava_runner   the script that environment runs (numpy and lava-nc only)
"""
