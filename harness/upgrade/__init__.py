"""``ckpt-harness upgrade --from A --to B``: a user's own checkpoints and model code, answered in both releases.

:mod:`harness.upgrade.config` reads the project's ``[tool.ckpt-harness]``; :mod:`harness.upgrade.worker`
runs inside each release (the user's code, their files); :mod:`harness.upgrade.compare` puts the two
sides together into the four answers per file and model (Load, Partial, Resume, Outputs);
:mod:`harness.upgrade.report` writes them as Markdown and HTML.
"""
