"""Which globals a pickle may name: dangerous, vetted harmless, or unknown (suspicious).

The lists are data, merged from picklescan's ``_unsafe_globals`` (1.0.5) and fickling's
``UNSAFE_IMPORTS`` / ``UnsafeImportsML`` (0.1.12), plus entries of our own (marked below);
``tests/test_dangerous.py`` checks on crafted payloads that every global those two scanners flag
is flagged here too. The rule, in order:

1. **dangerous** — a global the blocklist names: a module of :data:`DANGEROUS_MODULES` anywhere in
   its dotted module path (``os``, ``posix``, ``subprocess``, ... — fickling's component rule), a
   module under :data:`DANGEROUS_PREFIXES` (``torch.jit``), an exact name of
   :data:`DANGEROUS_NAMES` (``io.open``, ``torch.load``), an attribute of
   :data:`DANGEROUS_ATTRIBUTES` (``*.system``, ``*.eval``), a builtin not in
   :data:`HARMLESS_BUILTINS`, or a name computed while unpickling (:data:`COMPUTED`).
2. **harmless** — torch's own ``weights_only`` allowlist, or :data:`VETTED_HARMLESS`.
3. **suspicious** — anything else: a class the harness knows nothing about (a user's model
   class, ``torch.nn.modules.conv.Conv2d``). It runs its own code when unpickled.

Only :data:`VETTED_HARMLESS` names may ever be suggested to ``torch.serialization.add_safe_globals``.
"""

from __future__ import annotations

from typing import Iterable, Optional

DANGEROUS = "dangerous"
HARMLESS = "harmless"
SUSPICIOUS = "suspicious"

#: the global recorded when a pickle builds a global's module or name at load time (STACK_GLOBAL
#: on values that are not plain strings in the file: a getattr/memo trick hiding what it imports)
COMPUTED = "<computed>.<global named at load time>"

#: modules whose every global is dangerous, matched against each part of the dotted module path
DANGEROUS_MODULES: frozenset[str] = frozenset({
    # fickling UNSAFE_IMPORTS
    "__builtin__", "__builtins__", "builtins", "os", "posix", "nt", "subprocess", "sys", "pty", "commands",
    "multiprocessing", "_posixsubprocess", "code", "codeop", "runpy", "marshal", "types", "compile", "exec", "eval",
    "doctest", "importlib", "_frozen_importlib", "_frozen_importlib_external", "_imp", "pkgutil", "zipimport", "gc",
    "site", "unittest", "inspect", "test", "_operator", "operator", "functools", "cProfile", "profile", "pdb", "bdb",
    "timeit", "trace", "socket", "ssl", "httplib", "http", "urllib", "urllib2", "requests", "aiohttp", "asyncio",
    "webbrowser", "smtplib", "imaplib", "ftplib", "poplib", "telnetlib", "nntplib", "ctypes", "_ctypes", "pickle",
    "_pickle", "dill", "cloudpickle", "joblib", "shutil", "tempfile", "filecmp", "distutils", "pydoc", "pexpect",
    "venv", "ensurepip", "pip", "idlelib", "lib2to3", "socketserver", "xmlrpc", "signal", "_signal", "threading",
    "_thread", "atexit", "sqlite3", "_sqlite3", "fileinput", "glob", "platform", "linecache", "difflib", "compileall",
    "py_compile", "mmap", "select", "selectors", "logging", "syslog", "tarfile", "zipfile", "shelve", "uuid",
    "_osx_support", "_aix_support",
    # picklescan _unsafe_globals "*" entries not above
    "_pyrepl",
    # ours: the same powers under other names
    "_winapi", "winreg", "msvcrt", "shlex", "sysconfig", "resource", "fcntl", "termios", "tty", "faulthandler",
    "tracemalloc", "readline", "rlcompleter", "cgi", "cgitb", "wsgiref", "smtpd", "asynchat", "asyncore",
    "paramiko", "fabric", "plumbum", "yaml", "jsonpickle", "numexpr", "_xxsubinterpreters",
})

#: modules (and their submodules) that are dangerous as a whole, matched as a dotted prefix
DANGEROUS_PREFIXES: tuple[str, ...] = (
    # fickling UnsafeImportsML.UNSAFE_MODULES
    "torch.hub", "torch._dynamo", "torch._inductor", "torch.jit", "torch.compile", "numpy.f2py", "numpy.distutils",
    # picklescan
    "numpy.testing._private.utils", "requests.api", "distutils.file_util", "urllib.request",
    # ours: code loading/compiling under torch
    "torch.utils.cpp_extension", "torch.package", "torch._C._jit", "torch.utils.bottleneck", "torch.utils.collect_env",
    "torch.utils.data.datapipes.utils.decoder", "torch.fx.experimental.symbolic_shapes", "torch.testing",
    "torch.distributed.rpc", "torch.distributed.elastic", "torch.multiprocessing", "torch._export.serde",
    "torch.export", "torch.library", "torch.ops", "torch._ops", "torch.backends.cudnn.rnn",
)

#: exact ``module.name`` globals that are dangerous in modules that are otherwise fine
DANGEROUS_NAMES: frozenset[str] = frozenset({
    # picklescan
    "torch.serialization.load", "torch._inductor.codecache.compile_file",
    "torch.jit.unsupported_tensor_ops.execWrapper",
    "torch.utils._config_module.ConfigModule.load_config", "torch._dynamo.guards.GuardBuilder.get",
    "torch.fx.experimental.symbolic_shapes.ShapeEnv.evaluate_guards_expression", "logging.FileHandler",
    "_io.FileIO", "code.InteractiveInterpreter.runcode", "doctest.debug_script", "ensurepip._run_pip",
    "pkgutil.resolve_name", "imaplib.IMAP4_stream", "trace.Trace.run", "trace.Trace.runctx", "types.CodeType",
    "functools.partial",
    # fickling UnsafeImportsML.UNSAFE_IMPORTS
    "torch.load", "torch.compile", "torch.storage._load_from_bytes", "torch.utils._config_module.ConfigModule",
    "torch.distributed.elastic.rendezvous.api.basichandlers", "numpy.testing._private.utils.runstring",
    "_io.open", "io.open", "io.FileIO",
    # ours
    "io.open_code", "_io.open_code", "numpy.load", "numpy.lib.npyio.load", "numpy.loadtxt", "numpy.fromfile",
    "numpy.memmap", "numpy.core.memmap.memmap", "numpy.save", "numpy.savetxt", "numpy.tofile",
    "torch.serialization._load", "torch.serialization._legacy_load", "torch.from_file", "torch.save",
    "torch.serialization.save", "torch.jit.load", "torch.utils.data.dataloader.DataLoader",
    "torch._C._import_ir_module", "torch._C.import_ir_module", "torch.classes.load_library",
    "torch.ops.load_library", "torch._utils._rebuild_device_tensor_from_numpy_eval",
    "pandas.read_pickle", "pandas.io.pickle.read_pickle", "scipy.io.loadmat", "PIL.Image.open",
    "copyreg._inverted_registry", "copyreg.add_extension", "copyreg.__newobj_ex__",
})

#: attribute names that run code, touch files or the network whatever module they come from
DANGEROUS_ATTRIBUTES: frozenset[str] = frozenset({
    "system", "popen", "popen2", "popen3", "popen4", "spawn", "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv",
    "spawnve", "spawnvp", "spawnvpe", "execl", "execle", "execlp", "execlpe", "execv", "execve", "execvp",
    "execvpe", "fork", "forkpty", "posix_spawn", "posix_spawnp", "startfile", "kill", "killpg",
    "eval", "exec", "execfile", "compile", "__import__", "import_module", "reload", "getattr", "setattr", "delattr",
    "globals", "locals", "vars", "breakpoint", "input", "apply", "run_path", "run_module", "_run_code",
    "_run_module_code", "interact", "runcode", "runsource", "runctx", "check_call", "check_output", "getoutput",
    "getstatusoutput", "Popen", "call", "urlopen", "urlretrieve", "loads", "load", "unsafe_load", "full_load",
    "load_inline", "load_library", "LoadLibrary", "CDLL", "PyDLL", "WinDLL", "cdll", "rmtree", "remove", "unlink",
    "rmdir", "removedirs", "rename", "renames", "replace", "truncate", "chmod", "chown", "write_text",
    "write_bytes", "mkfifo", "mknod", "symlink", "link", "putenv", "unsetenv", "setuid", "setgid", "chdir", "chroot",
    "open", "open_code", "FileIO", "create_connection", "attrgetter", "itemgetter", "methodcaller", "partial",
    "partialmethod", "reduce", "FunctionType", "CodeType", "LambdaType", "MethodType", "resolve_name",
    "pipepager", "pager", "locate", "debug_script", "execWrapper", "runstring", "_load_from_bytes",
})

#: builtins that only build data (fickling's SAFE_BUILTINS); every other builtin is dangerous
HARMLESS_BUILTINS: frozenset[str] = frozenset({
    "bool", "int", "float", "complex", "str", "bytes", "bytearray", "list", "tuple", "set", "frozenset", "dict",
    "len", "abs", "sum", "min", "max", "round", "pow", "divmod", "sorted", "reversed", "enumerate", "zip", "range",
    "map", "filter", "slice", "iter", "next", "all", "any", "hash", "id", "repr", "ascii", "bin", "hex", "oct",
    "ord", "chr", "isinstance", "issubclass", "object", "callable", "format",
})
BUILTIN_MODULES = frozenset({"builtins", "__builtin__", "__builtins__"})

#: globals reviewed as harmless to construct from a pickle (data containers, tensor rebuilds,
#: picklescan's ``_safe_globals``); the only names a fix may pass to ``add_safe_globals``
VETTED_HARMLESS: frozenset[str] = frozenset({
    "collections.OrderedDict", "collections.Counter", "collections.defaultdict", "collections.deque",
    "_codecs.encode", "argparse.Namespace", "datetime.datetime", "datetime.date", "datetime.time",
    "datetime.timedelta", "datetime.timezone", "decimal.Decimal", "fractions.Fraction", "uuid.UUID",
    "builtins.set", "builtins.frozenset", "builtins.bytearray", "builtins.complex", "builtins.slice",
    "builtins.range", "numpy.dtype", "numpy.ndarray", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
    "torch.Size", "torch.device", "torch.nn.parameter.Parameter", "torch._utils._rebuild_tensor",
    "torch._utils._rebuild_tensor_v2", "torch._utils._rebuild_tensor_v3", "torch._utils._rebuild_parameter",
    "torch._utils._rebuild_parameter_with_state", "torch._tensor._rebuild_from_type_v2",
    "torch.torch_version.TorchVersion", "pathlib.Path", "pathlib.PosixPath", "pathlib.WindowsPath",
    "pathlib.PurePath", "pathlib.PurePosixPath", "pathlib.PureWindowsPath",
    *(f"builtins.{name}" for name in ("list", "dict", "tuple", "int", "float", "str", "bytes", "bool")),
    *(f"torch.{kind}Storage" for kind in ("Long", "Float", "Half", "QUInt2x4", "QUInt4x2", "QInt32", "QInt8",
                                          "QUInt8", "ComplexFloat", "ComplexDouble", "Double", "BFloat16", "Bool",
                                          "Char", "Short", "Int", "Byte", "Untyped")),
} - {"uuid.UUID"})  # uuid is a dangerous module (uuid._get_command_stdout): never suggest it


#: globals of a TorchScript archive's pickles that torch.jit.load resolves itself (its classes are
#: compiled from the archive's code/, its helpers build lists); not Python imports
TORCHSCRIPT_OWN = ("__torch__.", "torch.jit._pickle.")


def split(qualified: str) -> tuple[str, str]:
    """``os.path.join`` → (``os.path``, ``join``); a name without a dot has an empty module."""
    module, _, name = qualified.rpartition(".")
    return module, name


#: data-only classes under a dangerous prefix that torch's own weights_only allowlist admits once the module is
#: imported (importing ``torch._dynamo`` registers ``_DimRange``, a plain dataclass of two ints): not dangerous.
TORCH_ALLOWLISTED_UNDER_DANGEROUS_PREFIX: frozenset[str] = frozenset({"torch._dynamo.decorators._DimRange"})


def danger(qualified: str, module: Optional[str] = None, name: Optional[str] = None) -> Optional[str]:
    """Why a global is dangerous, or None. ``module``/``name`` as the pickle spelled them, when known
    (a dotted name like ``InteractiveInterpreter.runcode`` is not split at the right dot otherwise)."""
    if qualified == COMPUTED:
        return "its module or name is computed while unpickling (a getattr/memo trick hides what it imports)"
    if qualified in TORCH_ALLOWLISTED_UNDER_DANGEROUS_PREFIX:
        return None
    if module is None or name is None:
        module, name = split(qualified)
    if qualified in DANGEROUS_NAMES or f"{module}.{name}" in DANGEROUS_NAMES:
        return "on the blocklist"
    if module in BUILTIN_MODULES or module.split(".")[0] in BUILTIN_MODULES:
        return None if name in HARMLESS_BUILTINS else f"the builtin {name!r} runs code or touches the system"
    parts = module.split(".")
    hit = next((p for p in parts if p in DANGEROUS_MODULES), None)
    if hit:
        return f"the module {hit!r} runs code, touches files or the network"
    prefix = next((p for p in DANGEROUS_PREFIXES if module == p or module.startswith(p + ".")), None)
    if prefix:
        return f"{prefix} loads or compiles code"
    attributes = name.split(".")
    attribute = next((a for a in attributes if a in DANGEROUS_ATTRIBUTES or a in DANGEROUS_MODULES), None)
    if attribute:
        return f"{attribute!r} runs code, touches files or the network"
    return None


def classify(qualified: str, allowlist: Iterable[str] = ()) -> str:
    """``dangerous``, ``harmless`` or ``suspicious`` (see the module docstring for the order)."""
    if danger(qualified) is not None:
        return DANGEROUS
    if qualified in VETTED_HARMLESS or qualified in set(allowlist):
        return HARMLESS
    return SUSPICIOUS


def sort_globals(names: Iterable[str], allowlist: Optional[Iterable[str]] = None) -> dict[str, list[str]]:
    """``{"dangerous": [...], "suspicious": [...], "harmless": [...]}`` for the globals a file names."""
    allowed = frozenset(allowlist or ())
    out: dict[str, list[str]] = {DANGEROUS: [], SUSPICIOUS: [], HARMLESS: []}
    for name in names:
        if danger(name) is not None:
            out[DANGEROUS].append(name)
        elif name in VETTED_HARMLESS or name in allowed:
            out[HARMLESS].append(name)
        else:
            out[SUSPICIOUS].append(name)
    return {k: sorted(set(v)) for k, v in out.items()}


def vetted(names: Iterable[str]) -> bool:
    """True when every name may be suggested to ``add_safe_globals`` (all vetted, none dangerous)."""
    names = list(names)
    return bool(names) and all(n in VETTED_HARMLESS and danger(n) is None for n in names)
