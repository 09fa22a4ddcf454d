"""What a run reports while it runs: metric writers (JSON lines, W&B) and energy meters (CodeCarbon).
A failing writer or meter warns; it never stops training."""
