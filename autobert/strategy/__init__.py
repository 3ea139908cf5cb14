"""What a search runs next and when it stops: cost model, planner, pruners, warm start, portfolios."""
