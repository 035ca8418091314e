"""Built-in tokenizers, registered like any plugin's."""
