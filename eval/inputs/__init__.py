"""Inputs: tasks and their fixed splits (data.py), the data reference a run records (dataref.py), reading raw
tables from files, packages and HF datasets (sources.py) and decoding their bytes (encoding.py).
"""
