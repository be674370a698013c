"""One module per CLI command. Import only typer/stdlib at module level; heavy imports inside."""
