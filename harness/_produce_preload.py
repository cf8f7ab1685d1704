"""Imported once by the produce workers' server (:mod:`harness.produce_pool`): importing this module imports the
packages the formats import lazily on their first save, which each worker would otherwise import for itself
(torch._dynamo, which torch.export and torch.compile need: ~3–8 CPU s in 2.13 without torchvision; onnx and
onnxscript for the ONNX export; DCP). A package that does not import here is left out; any error it raises is
swallowed (the server's preload survives an ImportError only). Nothing else imports this module: its import is
its whole job."""

from harness import compat

#: packages imported once in the workers' server, in this order
PRODUCE_PRELOAD = ("torch._dynamo", "torch.export", "onnx", "onnxscript", "onnxruntime", "safetensors.torch",
                   "torch.distributed.checkpoint", "torch.distributed.checkpoint.state_dict")

for _name in PRODUCE_PRELOAD:
    compat.import_optional(_name)
