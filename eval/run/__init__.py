"""Running runs: the run spec and record I/O (records.py), the typed record schema (record.py), the one run loop
(runner.py), preflight checks (preflight.py), the CLI plumbing every track shares (cli.py), sweeps and their
executors (sweep.py, executors.py, distributed.py), and what a record notes about the run: hardware and dtype
(hardware.py), library versions (versions.py), cost (cost.py), the validation split (validation.py), library
warnings (noise.py).
"""
