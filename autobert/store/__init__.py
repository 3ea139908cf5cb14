"""Where studies live and what a trial stores: storages, locks, heartbeats, the trial record."""
