"""The core's own plugins (see registry.DEFAULT_PLUGINS)."""
