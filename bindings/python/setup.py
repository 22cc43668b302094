"""Builds the supermachine Python package (pip install bindings/python).

The extension links the static libsupermachine.a of a build tree: by default
the repository's own build/ (this file's ../../build), or the one named by
$SUPERMACHINE_BUILD. Build the library first:

    make build/lib/libsupermachine.a        # or just `make`
    pip install bindings/python

Being static, the installed module needs no libsupermachine.so at run time;
the VMM, guest kernel and initramfs are found as the library finds them
($SUPERMACHINE_VMM, $SUPERMACHINE_KERNEL, $SUPERMACHINE_INITRD or
$SUPERMACHINE_ASSETS, or `make install`'s folders).
"""
import os
import re
import sys

from setuptools import Extension, setup

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
BUILD = os.path.abspath(os.environ.get("SUPERMACHINE_BUILD", os.path.join(ROOT, "build")))
INCLUDE = os.path.join(ROOT, "include")
ARCHIVE = os.path.join(BUILD, "lib", "libsupermachine.a")


def version():
    with open(os.path.join(INCLUDE, "supermachine.h")) as f:
        text = f.read()
    parts = [re.search(r"#define SM_VERSION_%s (\d+)" % k, text).group(1) for k in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


building = any(a.startswith(("build", "bdist", "install", "develop", "editable")) for a in sys.argv[1:])
if building and not os.path.exists(ARCHIVE):
    sys.exit("supermachine: no %s: build the library first (make build/lib/libsupermachine.a in %s), "
             "or set SUPERMACHINE_BUILD to a build folder that has it" % (ARCHIVE, ROOT))

ext = Extension(
    "supermachine._supermachine",
    sources=["supermachine/_supermachine.c"],
    include_dirs=[INCLUDE],
    define_macros=[("_GNU_SOURCE", None)],
    extra_compile_args=["-std=c11", "-Wall", "-Wextra", "-Werror"],
    extra_objects=[ARCHIVE],
    libraries=["curl", "archive", "json-c", "crypto", "slirp", "seccomp", "pthread", "z"],
)

setup(
    name="supermachine",
    version=version(),
    description="Run commands inside hardware-isolated Linux microVMs (libsupermachine binding)",
    packages=["supermachine"],
    package_data={"supermachine": ["__init__.pyi", "py.typed"]},
    ext_modules=[ext],
    python_requires=">=3.9",
)
