"""Built-in datasets, registered like any plugin's."""
