"""One module per `autobert` command: each parses its arguments and calls a library function."""
