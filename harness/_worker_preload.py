"""Imported once by the consume workers' server (:func:`harness.consume_pool.start_server`): importing this
module imports the optional packages each worker would otherwise import for itself (torchvision: ~2.4 CPU s, it
imports torch._dynamo). A package that does not import here is left out; any error it raises is swallowed (the
server's preload survives an ImportError only, and torchvision beside a mismatched torch raises a RuntimeError).
Nothing else imports this module: its import is its whole job."""

from harness import compat

#: optional packages imported once in the workers' server
OPTIONAL_PRELOAD = ("torchvision",)

for _name in OPTIONAL_PRELOAD:
    compat.import_optional(_name)
