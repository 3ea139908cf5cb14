"""`autobert ablate`: arm planning, statistics, the runner and the rendering."""
