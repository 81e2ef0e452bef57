"""Exports of the lists in force for other systems: stage-1 diversion, fleet snapshots, the PAC file.
"""
