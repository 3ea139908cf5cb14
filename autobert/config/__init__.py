"""Study file and frozen config: schema, the search space, technique settings."""
