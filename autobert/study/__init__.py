"""The Optuna study: create and resume, the objective, export, validation, workers, the console display."""
