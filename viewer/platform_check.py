"""Before Qt starts: is there a display, and can Qt's X11 plugin load? One line that says what to do.

Why: without a display, or without the system libraries Qt's xcb plugin needs (libxcb-cursor0 and
friends, absent on a minimal Linux box), Qt aborts the process with its own multi-line message and a
core dump. Here the same conditions give ``radlens: error: ...`` naming the Debian/Ubuntu packages to
install. Only Linux with the xcb platform is checked; offscreen, Wayland, macOS and Windows pass.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

# The sonames whose Debian package is not simply the soname's stem and major version.
PACKAGE_OF = {"libglib-2.0.so.0": "libglib2.0-0", "libX11-xcb.so.1": "libx11-xcb1", "libX11.so.6": "libx11-6"}


def problem(environ=os.environ, platform: str = sys.platform) -> str | None:
    """Why the window cannot open here (one line), or None when it can."""
    if platform != "linux":
        return None
    qpa = environ.get("QT_QPA_PLATFORM", "")
    if qpa and not qpa.startswith("xcb"):
        return None  # offscreen, wayland, vnc, ...: Qt's own plugins, nothing to check
    if not qpa and environ.get("WAYLAND_DISPLAY"):
        return None
    if not environ.get("DISPLAY"):
        return (
            "no display: set DISPLAY (or run under xvfb-run); radlens export and radlens infer need none, and "
            "QT_QPA_PLATFORM=offscreen renders without one"
        )
    missing = missing_libraries()
    if missing:
        return (
            f"Qt's X11 plugin cannot load: {', '.join(missing)} not found; install them with "
            f"apt-get install {' '.join(debian_package(s) for s in missing)}"
        )
    return None


def missing_libraries(plugin: Path | None = None) -> list[str]:
    """The sonames ``ldd`` cannot resolve for Qt's xcb platform plugin (and what it links)."""
    plugin = plugin or _xcb_plugin()
    if plugin is None or not plugin.is_file():
        return []
    try:
        out = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return not_found(out)


def not_found(ldd_output: str) -> list[str]:
    """The sonames ldd's output reports as ``not found``, in order, once each."""
    names = re.findall(r"^\s*(\S+)\s+=>\s+not found", ldd_output, flags=re.MULTILINE)
    return list(dict.fromkeys(names))


def debian_package(soname: str) -> str:
    """The Debian/Ubuntu package that ships ``soname``: libxcb-cursor.so.0 → libxcb-cursor0."""
    if soname in PACKAGE_OF:
        return PACKAGE_OF[soname]
    stem, _, version = soname.partition(".so.")
    stem = stem.lower()
    major = version.split(".")[0] if version else ""
    return f"{stem}{'-' if stem[-1:].isdigit() and major else ''}{major}"


def _xcb_plugin() -> Path | None:
    try:
        import PySide6
    except ImportError:
        return None
    return Path(PySide6.__file__).parent / "Qt" / "plugins" / "platforms" / "libqxcb.so"
