"""Stage orchestration and the CLI command bodies (imports the srkd library, never the reverse)."""
