"""``tunesmith new-plugin``: a new plugin package whose tests pass as generated.

::

    from tunesmith.scaffold import new_plugin
    written = new_plugin("acme", kind="family", output_dir=".")   # ./tunesmith-acme/...

The templates are package data (``templates/<kind>/`` over ``templates/common/``,
rendered with Jinja2 using ``[[ ]]`` / ``[% %]`` delimiters, so the Jinja config
templates a family ships pass through untouched).
"""

from tunesmith.scaffold._scaffold import PLUGIN_KINDS, check_name, new_plugin, render_plugin

__all__ = ["PLUGIN_KINDS", "check_name", "new_plugin", "render_plugin"]
