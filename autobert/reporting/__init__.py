"""What autobert writes for people: the study report and the model card."""
