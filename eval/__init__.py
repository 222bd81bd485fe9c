"""The harness every track shares. Its parts:

- `tracks.py`: the registry and the Track contract (the only place the harness learns about tracks);
- `inputs/`: tasks, splits and reading the user's data;
- `lm/`: causal-LM loading and inference shared by the LLM tracks;
- `run/`: specs, the run loop, preflight, records, sweeps and executors;
- `scoring/`: answer extraction and metrics;
- `decide/`: statistics, leaderboard, recommend, settle, report;
- `serve/`: any recorded run behind an HTTP API;
- `doctor.py`, `errors.py`: what runs on this machine; the error a user's input raises.

The scripts at this level (`data.py`, `sweep.py`, `leaderboard.py`, ...) are the commands users know
(`python eval/leaderboard.py ...`); each runs its module's `main`. docs/architecture.md shows the data flow.
"""
