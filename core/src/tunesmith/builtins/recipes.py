"""Built-in recipes, registered like any plugin's."""
