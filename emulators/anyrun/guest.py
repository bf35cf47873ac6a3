"""The emulated sandbox guests: OS descriptions, browsers and user folders."""

from typing import Any

# Guest address of the emulated sandbox VM, shown as the source of network alerts.
GUEST_IP = "192.168.100.61"

# data.environments.os of a report, by (env_os, env_version); {bits} is the bitness.
OS_INFO: dict[tuple[str, str], dict[str, Any]] = {
    ("windows", "7"): {
        "product": "Windows",
        "variant": "Professional",
        "productType": "Client",
        "major": "7",
        "servicePack": "1",
        "build": 7601,
        "title": "Windows 7 Professional Service Pack 1 (build: 7601, {bits} bit)",
    },
    ("windows", "10"): {
        "product": "Windows",
        "variant": "Professional",
        "productType": "Client",
        "major": "10",
        "servicePack": "",
        "build": 19045,
        "title": "Windows 10 Professional (build: 19045, {bits} bit)",
    },
    ("windows", "11"): {
        "product": "Windows",
        "variant": "Professional",
        "productType": "Client",
        "major": "11",
        "servicePack": "",
        "build": 26100,
        "title": "Windows 11 Professional (build: 26100, {bits} bit)",
    },
    ("windows", "server 2025"): {
        "product": "Windows Server",
        "variant": "Standard",
        "productType": "Server",
        "major": "2025",
        "servicePack": "",
        "build": 26100,
        "title": "Windows Server 2025 Standard (build: 26100, {bits} bit)",
    },
    ("linux", "22.04.2"): {
        "product": "Ubuntu",
        "variant": "Desktop",
        "productType": "Client",
        "major": "22.04.2",
        "servicePack": "",
        "build": 0,
        "title": "Ubuntu 22.04.2 LTS ({bits} bit)",
    },
    ("linux", "12.2"): {
        "product": "Debian",
        "variant": "Desktop",
        "productType": "Client",
        "major": "12.2",
        "servicePack": "",
        "build": 0,
        "title": "Debian 12.2 ({bits} bit)",
    },
    ("android", "14"): {
        "product": "Android",
        "variant": "",
        "productType": "Client",
        "major": "14",
        "servicePack": "",
        "build": 0,
        "title": "Android 14 ({bits} bit)",
    },
    ("macos", "15"): {
        "product": "macOS",
        "variant": "Sequoia",
        "productType": "Client",
        "major": "15",
        "servicePack": "",
        "build": 0,
        "title": "macOS 15 Sequoia ({bits} bit)",
    },
}

# data.environments.software of a report, by env_os.
SOFTWARE = {
    "windows": [
        {"title": "Microsoft Edge", "version": "124.0.2478.80"},
        {"title": "Google Chrome", "version": "124.0.6367.119"},
    ],
    "linux": [
        {"title": "Google Chrome", "version": "124.0.6367.118"},
        {"title": "Mozilla Firefox", "version": "125.0.3"},
    ],
}

# Image path, company and description of the browser process, by (env_os, browser).
BROWSER_IMAGES = {
    ("windows", "Microsoft Edge"): (
        "C:\\Program Files (x86)\\Microsoft\\Edge\\Application\\msedge.exe",
        "Microsoft Corporation",
        "Microsoft Edge",
    ),
    ("windows", "Google Chrome"): (
        "C:\\Program Files\\Google\\Chrome\\Application\\chrome.exe",
        "Google LLC",
        "Google Chrome",
    ),
    ("windows", "Mozilla Firefox"): (
        "C:\\Program Files\\Mozilla Firefox\\firefox.exe",
        "Mozilla Corporation",
        "Firefox",
    ),
    ("windows", "Internet Explorer"): (
        "C:\\Program Files\\Internet Explorer\\iexplore.exe",
        "Microsoft Corporation",
        "Internet Explorer",
    ),
    ("linux", "Google Chrome"): ("/opt/google/chrome/chrome", "Google LLC", "Chrome"),
    ("linux", "Mozilla Firefox"): ("/usr/lib/firefox/firefox", "Mozilla", "Firefox"),
    ("macos", "Safari"): (
        "/Applications/Safari.app/Contents/MacOS/Safari",
        "Apple Inc.",
        "Safari",
    ),
    ("macos", "Google Chrome"): (
        "/Applications/Google Chrome.app/Contents/MacOS/Google Chrome",
        "Google LLC",
        "Google Chrome",
    ),
    ("macos", "Mozilla Firefox"): (
        "/Applications/Firefox.app/Contents/MacOS/firefox",
        "Mozilla",
        "Firefox",
    ),
}

# Paths of the obj_ext_startfolder values, by env_os.
START_FOLDERS = {
    "windows": {
        "desktop": "C:\\Users\\admin\\Desktop",
        "home": "C:\\Users\\admin",
        "downloads": "C:\\Users\\admin\\Downloads",
        "appdata": "C:\\Users\\admin\\AppData\\Roaming",
        "temp": "C:\\Users\\admin\\AppData\\Local\\Temp",
        "windows": "C:\\Windows",
        "root": "C:\\",
    },
    "linux": {
        "desktop": "/home/user/Desktop",
        "home": "/home/user",
        "downloads": "/home/user/Downloads",
        "temp": "/tmp",  # noqa: S108 - a path inside the emulated guest
    },
    "macos": {
        "desktop": "/Users/user/Desktop",
        "home": "/Users/user",
        "downloads": "/Users/user/Downloads",
        "temp": "/tmp",  # noqa: S108 - a path inside the emulated guest
    },
}
