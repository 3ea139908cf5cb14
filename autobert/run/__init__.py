"""One trial's run: the pipeline, the plugin manager and its defaults, data, device, models, the trial clock."""
