"""Serve any recorded run: its track's predictor (`Track.predictor`) behind a FastAPI app with dynamic batching.

- load.py: which run (record path, run id, or recommend's pick) and its predictor;
- predictor.py: what a predictor is (each track builds its own: the module its `Track.predictor` names in
  eval/tracks.py);
- batching.py: the dynamic batcher; app.py: the HTTP API; check.py: the parity check; cli.py: the command.

docs/serve.md explains the contract: served answers equal the run's evaluated per-example answers.
"""
