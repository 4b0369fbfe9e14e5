"""The `aloha` command line: `app.py` assembles every verb (robot and store verbs from `hardware.cli`, the pipeline's
own here). It sits at the top of the import graph, so it may import every package; nothing imports it."""
