"""Decisions from records alone: reading records into rows and curves (analysis.py), paired statistics
(stats.py), comparing two runs (compare.py), the leaderboard and its plots (leaderboard.py, plots.py), which
approach to use (recommend.py), gathering the evidence that settles a tie (settle.py), and the HTML report
(report.py, report_assets.py). docs/decide.md explains each choice.
"""
