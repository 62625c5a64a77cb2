"""Agents: claim tasks, run them in worker processes, heartbeat, record outcomes."""
