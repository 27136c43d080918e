"""Faust-streaming workers that turn raw agent status events into on-duty rosters and time-in-status windows.

Pure cores (no Faust import) hold the rules; ``*_stage.py`` modules wire them into Faust agents and tables.
"""
