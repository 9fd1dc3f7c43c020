"""Command line: thin wrappers that parse options, call the API and print a summary."""
