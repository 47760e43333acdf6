"""Scheduler: pure deadline logic (deadlines.py), the sweep (sweep.py) and the APScheduler ticker (jobs.py)."""
