"""Dangerous globals: every crafted payload is flagged, at least wherever picklescan or fickling flag it.

Each payload is a pickle assembled by hand (:mod:`tests.craft`) that, if fully unpickled, would
run a command touching a marker file, read/write files, open sockets or import code. Nothing
here unpickles it: the harness reads it inertly, picklescan and fickling scan its bytes
statically, in-process. The comparison table is printed with ``pytest -s`` and summarised in
``PAYLOADS``' docstrings; a payload either scanner flags and the harness does not fails the test.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from harness.inspect import dangerous, inspect_file
from tests import craft
from tests.craft import MARK, PROTO2, PROTO4, STACK_GLOBAL, call, glob, stack_glob, text

MARKER = "/tmp/ckpt-harness-test-marker-never-created"


def _cmd() -> bytes:
    return text(f"touch {MARKER}")


def getattr_trick() -> bytes:
    """``getattr(__import__('os'), 'system')('touch …')``: the global is assembled from a module object."""
    module = call(glob("builtins", "__import__"), text("os"))
    system = call(glob("builtins", "getattr"), module, text("system"))
    return craft.program(call(system, _cmd()))


def memo_stack_global() -> bytes:
    """STACK_GLOBAL whose module and name come from the memo, not literals next to the opcode."""
    pop = b"0"
    return craft.program(text("os") + craft.put(1) + pop + text("system") + craft.put(2) + pop
                         + craft.get(1) + craft.get(2) + STACK_GLOBAL + MARK + _cmd() + b"t" + b"R", PROTO4)


def computed_stack_global() -> bytes:
    """STACK_GLOBAL on a module name the pickle computes (``str.join``-like call): only known at load time."""
    module = call(glob("builtins", "str"), text("os"))
    return craft.program(module + text("system") + STACK_GLOBAL + MARK + _cmd() + b"t" + b"R", PROTO4)


def inst(module: str, name: str) -> bytes:
    """Protocol 0 INST: ``(S'…'\\ni<module>\\n<name>\\n``."""
    return (b"(S'touch " + MARKER.encode() + b"'\ni" + module.encode() + b"\n" + name.encode() + b"\n.")


def simple(module: str, name: str) -> bytes:
    return craft.program(call(glob(module, name), _cmd()))


def stacked(module: str, name: str) -> bytes:
    return craft.program(call(stack_glob(module, name), _cmd()), PROTO4)


def hidden(module: str, name: str) -> bytes:
    """The payload as one value of an otherwise ordinary dict."""
    return craft.in_dict("payload", call(glob(module, name), _cmd()))


#: name → raw pickle bytes; every one is dangerous
PAYLOADS: dict[str, bytes] = {
    "os.system": simple("os", "system"),
    "posix.system": simple("posix", "system"),
    "nt.system": simple("nt", "system"),
    "os.popen (INST)": inst("os", "popen"),
    "subprocess.Popen": simple("subprocess", "Popen"),
    "subprocess.check_call": simple("subprocess", "check_call"),
    "subprocess.run": stacked("subprocess", "run"),
    "builtins.eval": simple("builtins", "eval"),
    "builtins.exec": simple("builtins", "exec"),
    "builtins.compile": simple("builtins", "compile"),
    "builtins.open": simple("builtins", "open"),
    "builtins.getattr": simple("builtins", "getattr"),
    "builtins.__import__": simple("builtins", "__import__"),
    "__builtin__.apply": simple("__builtin__", "apply"),
    "__builtin__.eval": simple("__builtin__", "eval"),
    "builtins.breakpoint": stacked("builtins", "breakpoint"),
    "runpy._run_code": simple("runpy", "_run_code"),
    "io.open": simple("io", "open"),
    "_io.open": simple("_io", "open"),
    "_io.FileIO": simple("_io", "FileIO"),
    "pickle.loads": simple("pickle", "loads"),
    "_pickle.loads": simple("_pickle", "loads"),
    "marshal.loads": simple("marshal", "loads"),
    "shutil.rmtree": simple("shutil", "rmtree"),
    "socket.create_connection": simple("socket", "create_connection"),
    "webbrowser.open": simple("webbrowser", "open"),
    "importlib.import_module": simple("importlib", "import_module"),
    "sys.modules": craft.program(glob("sys", "modules")),
    "operator.attrgetter": simple("operator", "attrgetter"),
    "operator.methodcaller": simple("operator", "methodcaller"),
    "_operator.itemgetter": simple("_operator", "itemgetter"),
    "functools.partial": simple("functools", "partial"),
    "getattr-import trick": getattr_trick(),
    "STACK_GLOBAL from memo": memo_stack_global(),
    "STACK_GLOBAL computed": computed_stack_global(),
    "pty.spawn": simple("pty", "spawn"),
    "code.interact": simple("code", "interact"),
    "code.InteractiveInterpreter.runcode": stacked("code", "InteractiveInterpreter.runcode"),
    "torch.load": simple("torch", "load"),
    "torch.serialization.load": simple("torch.serialization", "load"),
    "torch.jit.load": simple("torch.jit", "load"),
    "torch.hub.load": simple("torch.hub", "load"),
    "torch._inductor.codecache.compile_file": simple("torch._inductor.codecache", "compile_file"),
    "torch.storage._load_from_bytes": simple("torch.storage", "_load_from_bytes"),
    "numpy.load": simple("numpy", "load"),
    "numpy.testing._private.utils.runstring": simple("numpy.testing._private.utils", "runstring"),
    "numpy.f2py.crackfortran.myeval": simple("numpy.f2py.crackfortran", "myeval"),
    "ctypes.CDLL": simple("ctypes", "CDLL"),
    "types.FunctionType": simple("types", "FunctionType"),
    "types.CodeType": simple("types", "CodeType"),
    "pkgutil.resolve_name": simple("pkgutil", "resolve_name"),
    "pdb.run": simple("pdb", "run"),
    "timeit.timeit": simple("timeit", "timeit"),
    "cProfile.run": simple("cProfile", "run"),
    "logging.FileHandler": simple("logging", "FileHandler"),
    "uuid._get_command_stdout": simple("uuid", "_get_command_stdout"),
    "asyncio.subprocess.create_subprocess_shell": simple("asyncio.subprocess", "create_subprocess_shell"),
    "urllib.request.urlopen": simple("urllib.request", "urlopen"),
    "tempfile.mktemp": simple("tempfile", "mktemp"),
    "cloudpickle.cloudpickle.subimport": simple("cloudpickle.cloudpickle", "subimport"),
    "os.system hidden in a dict": hidden("os", "system"),
    "yaml.unsafe_load": simple("yaml", "unsafe_load"),
    "pathlib.Path.write_text (dotted)": stacked("pathlib", "Path.write_text"),
}

#: raw pickle bytes the harness must NOT call dangerous (and what it should say instead)
HARMLESS: dict[str, tuple[bytes, str]] = {
    "state dict": (craft.in_dict("w", craft.tensor()), dangerous.HARMLESS),
    "OrderedDict": (craft.program(call(glob("collections", "OrderedDict"))), dangerous.HARMLESS),
    "argparse.Namespace": (craft.program(call(glob("argparse", "Namespace"))), dangerous.HARMLESS),
    "builtins.set": (craft.program(call(glob("builtins", "set"))), dangerous.HARMLESS),
    "user model class": (craft.program(call(glob("mymodels", "Net"))), dangerous.SUSPICIOUS),
    "torch.nn Conv2d": (craft.program(call(glob("torch.nn.modules.conv", "Conv2d"))), dangerous.SUSPICIOUS),
}


def picklescan_flags(data: bytes) -> bool:
    from picklescan.scanner import scan_pickle_bytes

    return scan_pickle_bytes(io.BytesIO(data), "payload").issues_count > 0


def fickling_flags(data: bytes) -> bool:
    """fickling's verdict at 'likely overtly malicious' or worse (its 'likely unsafe' is every torch import)."""
    from fickling.analysis import Severity, check_safety
    from fickling.fickle import Pickled

    try:
        pickled = Pickled.load(data, fail_on_decode_error=False)
        return check_safety(pickled).severity >= Severity.LIKELY_OVERTLY_MALICIOUS
    except Exception:  # noqa: BLE001 - fickling gives up on some hand-made streams: not a flag
        return False


def ours(path: Path) -> tuple[bool, list[str]]:
    found = inspect_file(path)
    return found.dangerous, found.dangerous_globals


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / (name.replace(" ", "_").replace("/", "_") + ".pt")
    path.write_bytes(craft.torch_zip(data))
    return path


@pytest.fixture(scope="module")
def comparison(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[bool, bool, bool, list[str]]]:
    folder = tmp_path_factory.mktemp("payloads")
    table = {}
    for name, data in PAYLOADS.items():
        flagged, names = ours(_write(folder, name, data))
        table[name] = (flagged, picklescan_flags(data), fickling_flags(data), names)
    print(f"\n{'payload':<45} harness picklescan fickling  dangerous globals")
    for name, (flagged, scan, fick, names) in table.items():
        print(f"{name:<45} {flagged!s:<7} {scan!s:<10} {fick!s:<9} {', '.join(names)}")
    counts = [sum(row[i] for row in table.values()) for i in range(3)]
    print(f"flagged of {len(table)}: harness {counts[0]}, picklescan {counts[1]}, fickling {counts[2]}")
    assert not Path(MARKER).exists()
    return table


def test_at_least_thirty_payloads() -> None:
    assert len(PAYLOADS) >= 30


def test_every_payload_is_dangerous(comparison: dict[str, tuple[bool, bool, bool, list[str]]]) -> None:
    missed = [name for name, (flagged, *_) in comparison.items() if not flagged]
    assert not missed, missed


def test_everything_picklescan_or_fickling_flags_is_flagged(
        comparison: dict[str, tuple[bool, bool, bool, list[str]]]) -> None:
    behind = [name for name, (flagged, scan, fick, _) in comparison.items() if (scan or fick) and not flagged]
    assert not behind, behind


@pytest.mark.parametrize("name", list(HARMLESS))
def test_harmless_and_unknown_are_not_dangerous(tmp_path: Path, name: str) -> None:
    data, expected = HARMLESS[name]
    found = inspect_file(_write(tmp_path, name, data))
    assert not found.dangerous, found.dangerous_globals
    if expected == dangerous.SUSPICIOUS:
        assert found.suspicious_globals, found


def test_the_getattr_trick_is_dangerous_not_corrupt(tmp_path: Path) -> None:
    found = inspect_file(_write(tmp_path, "trick", getattr_trick()))
    assert found.container == "zip", found.detail
    assert {"builtins.getattr", "builtins.__import__"} <= set(found.dangerous_globals)


def test_a_broken_pickle_still_shows_its_dangerous_globals(tmp_path: Path) -> None:
    """The stream breaks after naming os.system: corrupt, and dangerous."""
    data = PROTO2 + glob("os", "system") + b"\xff"
    found = inspect_file(_write(tmp_path, "broken", data))
    assert found.container == "corrupt" and found.dangerous_globals == ["os.system"], found


@pytest.mark.parametrize("wrap", ["raw", "legacy"])
def test_other_containers_are_scanned_too(tmp_path: Path, wrap: str) -> None:
    data = hidden("posix", "system")
    path = tmp_path / f"{wrap}.pt"
    path.write_bytes(data if wrap == "raw" else craft.legacy_stream(data))
    found = inspect_file(path)
    assert found.dangerous_globals == ["posix.system"], found


def test_torch_allowlist_has_nothing_on_the_blocklist() -> None:
    import torch._dynamo  # noqa: F401  (registers its classes in the allowlist: the answer must not depend on test order)

    from harness import compat

    allowed = compat.weights_only_allowlist() or frozenset()
    assert allowed, "this torch exposes its weights_only allowlist"
    assert not [n for n in allowed if dangerous.danger(n)]
    assert not [n for n in dangerous.VETTED_HARMLESS if dangerous.danger(n)]
    assert dangerous.danger("torch._dynamo.eval_frame.innermost_fn"), "the exception is one class, not the prefix"


def test_blocklist_covers_the_scanners_lists() -> None:
    """Every module/name on picklescan's and fickling's lists (as of the installed versions) is dangerous here."""
    from fickling.analysis import UnsafeImportsML
    from fickling.fickle import UNSAFE_IMPORTS
    from picklescan.scanner import _unsafe_globals

    missing = []
    for module, names in _unsafe_globals.items():
        for name in (["anything"] if names == "*" else [names] if isinstance(names, str) else names):
            if not dangerous.danger(f"{module}.{name}", module, name):
                missing.append(f"picklescan {module}.{name}")
    for module in UNSAFE_IMPORTS:
        if not dangerous.danger(f"{module}.anything", module, "anything"):
            missing.append(f"fickling {module}")
    for module in UnsafeImportsML.UNSAFE_MODULES:
        if not dangerous.danger(f"{module}.anything", module, "anything"):
            missing.append(f"fickling {module}")
    for module, names in UnsafeImportsML.UNSAFE_IMPORTS.items():
        missing += [f"fickling {module}.{n}" for n in names if not dangerous.danger(f"{module}.{n}", module, n)]
    assert not missing, missing


@pytest.mark.parametrize("name", list(PAYLOADS))
def test_payloads_are_well_formed_pickles(name: str) -> None:
    """A guard on the table itself: each payload is a complete opcode stream (pickletools walks it to STOP)."""
    import pickletools

    ops = [op.name for op, _, _ in pickletools.genops(PAYLOADS[name])]
    assert ops[-1] == "STOP" and any(op in ("GLOBAL", "STACK_GLOBAL", "INST") for op in ops)


def _verdict_for(names: list[str], dangerous_globals: list[str]) -> list[str]:
    from harness.checkfile.verdicts import judge
    from harness.inspect import Inspection

    inspection = Inspection("f.pt", 1, "zip", globals=names, dangerous_globals=dangerous_globals)
    fail = {"status": "fail", "message": "Weights only load failed", "warnings": []}
    result = {"loads": {"weights_only": fail, "unsafe": {"status": "skip", "message": "x", "warnings": []}},
              "torch": "2.13.0", "verified_fix": {
                  "status": "loads", "names": names,
                  "code": f"torch.serialization.add_safe_globals([{', '.join(names)}])"}}
    return judge(inspection, "2.13.0", result).fixes


@pytest.mark.parametrize(("names", "printed"), [
    (["argparse.Namespace"], True),
    (["collections.OrderedDict", "numpy.core.multiarray._reconstruct"], True),
    (["os.system"], False), (["builtins.eval"], False), (["io.open"], False),
    (["mymodels.Net"], False), (["argparse.Namespace", "subprocess.Popen"], False),
])
def test_no_allowlist_fix_names_a_dangerous_or_unvetted_global(names: list[str], printed: bool) -> None:
    """Even if a search reported such an allowlist as loading, the verdict does not print it."""
    fixes = _verdict_for(names, [n for n in names if dangerous.danger(n)])
    assert any("add_safe_globals" in f for f in fixes) is printed, fixes


def test_a_dangerous_file_gets_only_the_do_not_load_advice() -> None:
    fixes = _verdict_for(["argparse.Namespace"], ["posix.system"])
    assert fixes and fixes[0].startswith("do not load this file") and not any("safe_globals" in f for f in fixes)


def test_the_fix_search_list_is_vetted_here_too() -> None:
    """Every name harness.checkfile.safeglobals may allowlist is harmless by this module's rule."""
    from harness.checkfile.safeglobals import HARMLESS

    names = [f"{m}.{a}" for m, attrs in HARMLESS.items() for a in attrs if not a.startswith("*")]
    assert not [n for n in names if dangerous.danger(n)]
    assert not [n for n in names if n not in dangerous.VETTED_HARMLESS]


def test_a_dcp_folder_metadata_pickle_is_scanned(tmp_path: Path) -> None:
    """DCP unpickles .metadata in full: a dangerous global there makes the folder dangerous."""
    folder = tmp_path / "dcp"
    folder.mkdir()
    (folder / "__0_0.distcp").write_bytes(bytes(16))
    (folder / ".metadata").write_bytes(hidden("os", "system"))
    found = inspect_file(folder)
    assert found.container == "dcp" and found.dangerous_globals == ["os.system"], found
