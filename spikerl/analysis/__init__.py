"""Reading finished runs: GPS-UP arithmetic, the comparison report and its plots."""
