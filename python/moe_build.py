"""The PEP 517 build backend of the `moe` Python package (pyproject.toml names it), standard library only,
so that `pip install .` works offline: no setuptools or wheel to download.

A wheel holds python/moe/*.py and libmoe.so. The library comes from MOE_BUILD_DIR when that names a
build folder that has it (e.g. MOE_BUILD_DIR=build, as the tests do); otherwise CMake builds it in
build-python/ (Release, the shared library target only)."""
import base64
import hashlib
import os
import subprocess
import sysconfig
import tomllib
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PKG = os.path.join(ROOT, "python", "moe")


def _project():
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        return tomllib.load(f)["project"]


def _metadata():
    p = _project()
    lines = ["Metadata-Version: 2.1", f"Name: {p['name']}", f"Version: {p['version']}", f"Summary: {p['description']}",
             f"Requires-Python: {p['requires-python']}", f"License: {p['license']['text']}"]
    lines += [f"Requires-Dist: {d}" for d in p.get("dependencies", [])]
    return "\n".join(lines) + "\n"


def _library():
    build = os.environ.get("MOE_BUILD_DIR")
    if build:
        build = os.path.abspath(build)
    else:
        build = os.path.join(ROOT, "build-python")
        subprocess.run(["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", "-DMOE_SHARED_LIB=ON"], check=True,
                       stdout=subprocess.DEVNULL)
        subprocess.run(["cmake", "--build", build, "--target", "moe_shared", "-j", str(os.cpu_count() or 1)], check=True)
    real = os.path.realpath(os.path.join(build, "libmoe.so"))
    if not os.path.isfile(real):
        raise RuntimeError(f"{build}: no libmoe.so (configure with -DMOE_SHARED_LIB=ON and build the moe_shared target)")
    return real


def _tag():
    return "py3-none-" + sysconfig.get_platform().replace("-", "_").replace(".", "_")


def _record_line(name, data):
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def get_requires_for_build_wheel(config_settings=None):
    return []


def get_requires_for_build_sdist(config_settings=None):
    return []


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    p = _project()
    d = os.path.join(metadata_directory, f"{p['name']}-{p['version']}.dist-info")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "METADATA"), "w") as f:
        f.write(_metadata())
    return os.path.basename(d)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    p = _project()
    name, version = p["name"], p["version"]
    dist = f"{name}-{version}.dist-info"
    files = []
    for fn in sorted(os.listdir(PKG)):
        if fn.endswith(".py"):
            with open(os.path.join(PKG, fn), "rb") as f:
                files.append((f"moe/{fn}", f.read()))
    with open(_library(), "rb") as f:
        files.append(("moe/libmoe.so", f.read()))
    files.append((f"{dist}/METADATA", _metadata().encode()))
    files.append((f"{dist}/WHEEL", f"Wheel-Version: 1.0\nGenerator: moe_build\nRoot-Is-Purelib: false\nTag: {_tag()}\n".encode()))
    files.append((f"{dist}/top_level.txt", b"moe\n"))
    record = [_record_line(n, d) for n, d in files] + [f"{dist}/RECORD,,"]
    files.append((f"{dist}/RECORD", ("\n".join(record) + "\n").encode()))
    wheel = f"{name}-{version}-{_tag()}.whl"
    os.makedirs(wheel_directory, exist_ok=True)
    tmp = os.path.join(wheel_directory, wheel + ".tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for n, d in files:
            info = zipfile.ZipInfo(n, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (0o755 if n.endswith(".so") else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, d)
    os.replace(tmp, os.path.join(wheel_directory, wheel))
    return wheel
