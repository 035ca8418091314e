"""Built-in quantizers, registered like any plugin's."""
