"""The `keras-vitres` command. Nothing in the library imports this package."""
